"""Optional completion webhook (beyond ESD, which published to SNS): a signed POST per job event.

`ESD_WEBHOOK_URL` receives `{"event": "started"|"succeed"|"failed", "inference_id", "status", "task_type",
"error", "time"}` with `X-ESD-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with
ESD_WEBHOOK_SECRET>` (Stripe's scheme: the receiver recomputes it and rejects old timestamps). Delivery runs in an
actor on the `webhooks` queue, retried with backoff, under the same SSRF rules as checkpoint downloads.
"""

import hashlib
import hmac
import json
import logging
import time

from django.conf import settings

from esd.queues import send
from esd.safe_http import RequestRefused, TransientRequestError, post_json

from .models import InferenceJob

logger = logging.getLogger(__name__)


class WebhookFailed(Exception):
    pass


def signature(body: str, timestamp: int, secret: str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def webhook_queue(job: InferenceJob, event: str) -> None:
    if not settings.ESD_WEBHOOK_URL:
        return
    body = json.dumps(
        {
            "event": event,
            "inference_id": str(job.id),
            "status": job.status,
            "task_type": job.task_type,
            "error": job.error or None,
            "time": time.time(),
        }
    )
    try:
        send("webhook_deliver", str(job.id), event, body)
    except Exception:  # the broker is down: the job itself must not fail for its notification
        logger.exception("Could not queue the %s webhook of job %s", event, job.id)


def webhook_post(*, job_id: str, event: str, body: str) -> None:
    timestamp = int(time.time())
    headers = {"X-ESD-Signature": signature(body, timestamp, settings.ESD_WEBHOOK_SECRET), "X-ESD-Event": event}
    try:
        status = post_json(settings.ESD_WEBHOOK_URL, body.encode(), headers)
    except RequestRefused as exc:  # a private address without ESD_DOWNLOAD_ALLOW_HOSTS: retrying will not help
        logger.error("Webhook for job %s refused: %s", job_id, exc)
        return
    except TransientRequestError as exc:
        raise WebhookFailed(str(exc)) from exc
    if not 200 <= status < 300:
        raise WebhookFailed(f"the webhook answered HTTP {status}")
