"""Jobs of inferences: thin wrappers over services. `inference_run` is sent to the chosen endpoint's own queue."""

import dramatiq
from django.conf import settings


def _transient(retries: int, exception: Exception) -> bool:
    """Retry what a moment may fix: storage or model cache errors, and a database that is restarting."""
    from django.db import DatabaseError

    from .execution import TransientJobError

    return isinstance(exception, (TransientJobError, DatabaseError)) and retries < 3


@dramatiq.actor(
    queue_name="inference",
    max_retries=3,
    min_backoff=1000,
    max_backoff=30_000,
    retry_when=_transient,
    time_limit=settings.ESD_INFERENCE_TIME_LIMIT * 1000,
)
def inference_run(job_id: str) -> None:
    from endpoints.models import QUEUE_PREFIX
    from endpoints.runtime import serving_worker

    from .execution import inference_execute
    from .models import InferenceJob

    queue = InferenceJob.objects.filter(pk=job_id).values_list("endpoint__name", flat=True).first()
    serving = serving_worker(QUEUE_PREFIX + queue) if queue else None
    inference_execute(
        job_id=job_id,
        worker=serving.record if serving else None,
        device=serving.device if serving else settings.ESD_SERVE_DEVICE,
        pipelined=True,  # the pictures are stored while this worker thread takes its next message
    )


@dramatiq.actor(queue_name="webhooks", max_retries=6, min_backoff=2000, max_backoff=600_000)
def webhook_deliver(job_id: str, event: str, body: str) -> None:
    from .webhooks import webhook_post

    webhook_post(job_id=job_id, event=event, body=body)
