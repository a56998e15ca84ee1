"""The broker message that runs a job: made at start, made again when a job is sent anew (a sweep, a finisher that
let go of a job after a store failure)."""

import logging

from django.conf import settings
from dramatiq import Message

from esd.queues import enqueue, message_for

from . import transitions

logger = logging.getLogger(__name__)


def job_message(job_id: str, queue_name: str) -> Message:
    """The `inference_run` message of a job on its endpoint's queue. The time limit travels with the message, where
    dramatiq's TimeLimit looks first: the actor's own option is read once, at import, and a worker should stop a job
    at the limit in force when it was started."""
    limit = {"time_limit": settings.ESD_INFERENCE_TIME_LIMIT * 1000}
    return message_for("inference_run", job_id, queue_name=queue_name, options=limit)


def send(job_id: str, message: Message) -> bool:
    """Send a job's message. A broker that is down does not fail the request: the job stays queued without a
    message, and the workers' periodic sweep (services.inference_requeue_lost) sends it again once it is back."""
    try:
        enqueue(message)
    except Exception as exc:
        logger.warning("Could not queue job %s (broker unavailable: %s); it will be queued again", job_id, exc)
        transitions.unsent(job_id, message)
        return False
    return True
