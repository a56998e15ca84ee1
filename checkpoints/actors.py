"""Background jobs of checkpoints: thin wrappers over execution (the download run)."""

import dramatiq

# A multi-GB download may take hours on a slow link; the job has its own per-read timeout besides.
DOWNLOAD_TIME_LIMIT_MS = 6 * 60 * 60 * 1000


def _busy(retries: int, exception: Exception) -> bool:
    """Retry only a message that found the download's lease held (execution.DownloadBusy): after a lease's length
    the holder has either renewed it (alive: give up after a few tries) or not (dead: this message takes over)."""
    from checkpoints.execution import DownloadBusy

    return isinstance(exception, DownloadBusy) and retries < 3


@dramatiq.actor(
    queue_name="downloads",
    max_retries=3,
    retry_when=_busy,
    min_backoff=20_000,  # longer than services.DOWNLOAD_LEASE_SECONDS
    max_backoff=60_000,
    time_limit=DOWNLOAD_TIME_LIMIT_MS,
)
def checkpoint_download(checkpoint_id: str) -> None:
    from checkpoints import execution  # services imports this module to enqueue

    execution.checkpoint_download_run(checkpoint_id=checkpoint_id)
