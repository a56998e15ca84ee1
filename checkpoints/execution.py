"""The worker side of a checkpoint download: take the download's lease, stream the URL into storage with its hash
and progress, check the file, end Active or Failed; transient network errors are retried a bounded number of times.

Called by the `checkpoint_download` actor (and `import_checkpoint`). The state changes it shares with the upload
flows (failing a checkpoint, recording its files) and the lease rules are services'.
"""

import logging
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from esd import safe_http, shutdown
from esd.leases import Heartbeat
from esd.storage import StorageError, get_storage

from . import download, files, services
from .models import Checkpoint, CheckpointFile, CheckpointStatus

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0  # seconds between progress writes during a download
READ_CHUNK = 4 * 1024 * 1024


class DownloadBusy(Exception):
    """A download's lease is held: by a run that is alive, or by one that died less than a lease ago."""


def take_download(checkpoint_id: Any) -> bool:
    """Become the one run downloading this checkpoint: its lease is free or ran out (its run died). A second
    message for a download that is running (redelivered, or sent again by a sweep) finds it taken."""
    return services.DOWNLOADS.claim(checkpoint_id, download_lease_until=services.download_lease_end())


class Progress:
    """Bytes done so far, and the run's lease, written to the checkpoint's row once a second by a heartbeat.

    The body is consumed by whatever thread the store reads it in (s3transfer reads in its own threads), so the
    database is never touched from there: such threads would each open a connection and leave it behind.
    """

    def __init__(self, checkpoint_id: Any) -> None:
        self.checkpoint_id = checkpoint_id
        self.done = 0
        self._heartbeat = Heartbeat(self._beat, interval=PROGRESS_INTERVAL, name="download-progress").start()

    def _still_downloading(self) -> QuerySet[Checkpoint]:
        # Progress is written only while the row is Downloading: a write that lands after the final status (the
        # heartbeat is a second behind) must not change a finished row, which carries its own final figures.
        return Checkpoint.objects.filter(pk=self.checkpoint_id, status=CheckpointStatus.DOWNLOADING)

    def _beat(self) -> None:
        self._still_downloading().update(bytes_done=self.done, download_lease_until=services.download_lease_end())

    def finish(self) -> None:
        self._heartbeat.stop()
        self._still_downloading().update(bytes_done=self.done)
        Checkpoint.objects.filter(pk=self.checkpoint_id).update(download_lease_until=None)


def _stream(fetched: safe_http.Fetched, digest: files.BackgroundHasher, progress: Progress) -> Iterator[bytes]:
    """The response body, hashed, counted against the cap and the announced length."""
    limit = settings.ESD_MAX_CHECKPOINT_BYTES
    done = 0
    try:
        # 4 MiB reads: urllib3 reads 1 MiB chunks at a third of the speed (measured on loopback).
        for chunk in fetched.response.stream(READ_CHUNK):
            done += len(chunk)
            if done > limit:
                raise safe_http.RequestRefused(f"the file is larger than the {limit}-byte limit")
            if fetched.length is not None and done > fetched.length:
                raise safe_http.RequestRefused("the server sent more bytes than its Content-Length announced")
            digest.update(chunk)
            progress.done = done
            yield chunk
            if shutdown.interrupted.is_set():
                raise download.DownloadInterrupted("the process is stopping; the download resumes at its next start")
    except (safe_http.RequestRefused, download.DownloadInterrupted, files.FileRejected):
        raise
    except Exception as exc:  # the connection broke or timed out mid-body
        if exc.__class__.__module__.startswith(("urllib3", "http", "socket", "ssl")) or isinstance(exc, OSError):
            raise safe_http.TransientRequestError(f"the download broke off after {done} bytes: {exc}") from exc
        raise
    if fetched.length is not None and done != fetched.length:
        raise safe_http.TransientRequestError(f"the download ended after {done} of {fetched.length} bytes (truncated)")


def _download_once(checkpoint: Checkpoint, file: CheckpointFile, progress: Progress) -> None:
    storage = get_storage()
    fetched = safe_http.open_url(checkpoint.source_url)
    try:
        limit = settings.ESD_MAX_CHECKPOINT_BYTES
        if fetched.length is not None and fetched.length > limit:
            raise safe_http.RequestRefused(f"the file is {fetched.length} bytes, larger than the {limit}-byte limit")
        progress.done = 0
        Checkpoint.objects.filter(pk=checkpoint.pk).update(bytes_total=fetched.length, bytes_done=0)
        digest = files.BackgroundHasher()
        try:
            size = storage.write_stream(file.key, _stream(fetched, digest, progress))
        finally:
            digest.close()
    finally:
        fetched.close()
    stored = files.ingest(
        storage, folder=checkpoint.folder, name=file.name, limit=limit, sha256=digest.hexdigest(), size=size,
        kind=checkpoint.type,
    )  # fmt: skip
    with transaction.atomic():
        services.checkpoint_record_files(checkpoint, stored, replaced=file.name)
        # The final figures go with the final status, in one UPDATE: an Active row never shows a partial download.
        Checkpoint.objects.filter(pk=checkpoint.pk).update(
            status=CheckpointStatus.ACTIVE, error="", bytes_done=size, bytes_total=size, download_lease_until=None,
            updated_at=timezone.now(),
        )  # fmt: skip


def checkpoint_download_run(*, checkpoint_id: str) -> None:
    """The `checkpoint_download` job: stream the URL into storage, check the file, end Active or Failed.

    Harmless when sent twice (a redelivered message, a sweep's): only a `Downloading` checkpoint whose lease is
    free is worked on (take_download), and the run renews the lease until it ends; a message that finds the lease
    held raises DownloadBusy, which the actor retries a few times (the holder may have died). Transient network
    errors are retried a bounded number of times; everything else fails at once, with the reason.
    """
    checkpoint = Checkpoint.objects.filter(pk=checkpoint_id, status=CheckpointStatus.DOWNLOADING).first()
    if checkpoint is None:
        return
    if not take_download(checkpoint_id):
        # Another run holds it, or held it until it died moments ago (RabbitMQ redelivers the message of a killed
        # worker at once, before its lease runs out): the actor retries this message after the lease's length.
        raise DownloadBusy(f"checkpoint {checkpoint_id} is being downloaded by another run")
    progress = Progress(checkpoint.pk)
    try:
        _download_attempts(checkpoint, progress)
    finally:
        progress.finish()


def _download_attempts(checkpoint: Checkpoint, progress: Progress) -> None:
    file = checkpoint.files.order_by("position").first()
    if file is None or checkpoint.created_by is None:
        services.checkpoint_fail(checkpoint, "the checkpoint's creator or file record is gone")
        return
    attempts = 1 + settings.ESD_DOWNLOAD_RETRIES
    for attempt in range(attempts):
        try:
            _download_once(checkpoint, file, progress)
            return
        except safe_http.TransientRequestError as exc:
            if attempt + 1 >= attempts:
                services.checkpoint_fail(checkpoint, f"download failed after {attempts} attempts: {exc}")
                return
            logger.info("Checkpoint %s: %s; retrying", checkpoint.pk, exc)
            time.sleep(settings.ESD_DOWNLOAD_RETRY_DELAY * 4**attempt)  # 2 s, 8 s, 32 s by default
        except (safe_http.RequestRefused, files.FileRejected, StorageError) as exc:
            services.checkpoint_fail(checkpoint, str(exc))
            return
        except download.DownloadInterrupted as exc:  # still Downloading, its lease let go: sent again at a start
            logger.info("Checkpoint %s: %s", checkpoint.pk, exc)
            return
