"""Background jobs of checkpoints: thin wrappers over services."""

import dramatiq

# A multi-GB download may take hours on a slow link; the job has its own per-read timeout besides.
DOWNLOAD_TIME_LIMIT_MS = 6 * 60 * 60 * 1000


@dramatiq.actor(queue_name="downloads", max_retries=0, time_limit=DOWNLOAD_TIME_LIMIT_MS)
def checkpoint_download(checkpoint_id: str) -> None:
    from checkpoints import services  # services imports this module to enqueue

    services.checkpoint_download_run(checkpoint_id=checkpoint_id)
