"""Writes on checkpoints: the multipart and URL flows, completion, status, rename, deletion, download leases and the
sweeps that queue lost downloads again (the download run itself is execution.py). Wire behaviour from
esd-behaviour.md §7; hardening from architecture.md §3 and §5."""

import hashlib
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts import grants
from accounts import selectors as account_selectors
from accounts.access import require
from accounts.models import User
from accounts.permissions import holds
from esd import safe_http
from esd.errors import Forbidden, Invalid, Refused
from esd.leases import Lease, PendingMessages
from esd.queues import actor_queue, message_for, send, send_after_commit
from esd.responses import esd_time
from esd.storage import URL_LIFETIME, StorageError, get_storage

from . import download, files
from .models import Checkpoint, CheckpointFile, CheckpointStatus

logger = logging.getLogger(__name__)

DOWNLOAD_ACTOR = "checkpoint_download"  # actors.py; queued by name (esd.queues)
DOWNLOAD_LEASE_SECONDS = 15.0  # a download whose run stopped renewing its lease this long ago has no run


def already_exists(name: str) -> Refused:
    return Invalid(f"{name} already exists, please use another or rename/delete exists")


def may_change(actor: User, checkpoint: Checkpoint) -> bool:
    """Changing or deleting a checkpoint takes checkpoint:all, or checkpoint:create and owning it (its creator, or
    whoever the admin's object-permission page gave its change permission)."""
    if holds(actor, "checkpoint", "all"):
        return True
    return holds(actor, "checkpoint", "create") and grants.owns(actor, checkpoint)


def _check_names(names: list[str]) -> None:
    for name in names:
        try:
            files.check_filename(name)
        except files.FileRejected as exc:
            raise Invalid(str(exc)) from exc
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise Invalid(f"{sorted(duplicates)[0]} is named twice in this request")
    taken = CheckpointFile.objects.filter(name__in=names).values_list("name", flat=True).first()
    if taken:
        raise already_exists(taken)


def _new_checkpoint(
    *, actor: User, type: str, status: str, params: dict[str, Any], names: list[str], id: uuid.UUID | None = None
) -> Checkpoint:
    role_names = account_selectors.user_role_names([actor]).get(actor.pk, [])
    checkpoint = Checkpoint(
        id=id or uuid.uuid4(),
        type=type,
        status=status,
        params=dict(params),
        created_by=actor,
    )
    checkpoint.params["creator"] = actor.username
    checkpoint.save()
    checkpoint.params["created"] = esd_time(checkpoint.created_at)
    checkpoint.save(update_fields=["params"])
    try:
        with transaction.atomic():
            CheckpointFile.objects.bulk_create(
                CheckpointFile(checkpoint=checkpoint, name=name, position=index) for index, name in enumerate(names)
            )
    except IntegrityError as exc:  # another request took a name between the check and now
        raise already_exists(", ".join(names)) from exc
    # ESD: the creator's roles, else the creator (the account itself, not a name a role might share)
    grants.grant_new(checkpoint, owner=actor, visible_to=role_names, owner_views=not role_names)
    return checkpoint


@transaction.atomic
def checkpoint_create_multipart(
    *, actor: User, type: str, filenames: list[tuple[str, int]], params: dict[str, Any]
) -> tuple[Checkpoint, dict[str, list[str]]]:
    """`POST /checkpoints {filenames}`: an `Initial` checkpoint with one multipart upload per file; returns the
    checkpoint and, per file, its presigned part URLs (index i is part i+1)."""
    require(actor, "checkpoint.create")
    names = [name for name, _ in filenames]
    _check_names(names)
    checkpoint = _new_checkpoint(actor=actor, type=type, status=CheckpointStatus.INITIAL, params=params, names=names)
    storage = get_storage()
    started: list[tuple[str, str]] = []
    urls: dict[str, list[str]] = {}
    multipart: dict[str, Any] = {}
    try:
        for file in checkpoint.files.all():
            upload_id = storage.multipart_start(file.key)
            started.append((file.key, upload_id))
            file.upload_id = upload_id
            file.save(update_fields=["upload_id"])
            parts = dict(filenames)[file.name]
            urls[file.name] = [
                storage.multipart_part_url(file.key, upload_id, number) for number in range(1, parts + 1)
            ]
            multipart[file.name] = {"upload_id": upload_id, "bucket": storage.bucket, "key": file.key}
    except Exception:
        for key, upload_id in started:  # no orphaned uploads when the request fails half-way
            storage.multipart_abort(key, upload_id)
        raise
    checkpoint.params["multipart_upload"] = multipart
    checkpoint.save(update_fields=["params"])
    return checkpoint, urls


@transaction.atomic
def checkpoint_create_from_urls(*, actor: User, type: str, urls: list[str], params: dict[str, Any]) -> list[Checkpoint]:
    """`POST /checkpoints {urls}`: one `Downloading` checkpoint per URL, downloaded in the background. Names are
    resolved and reserved now, so a second request for the same file is refused at once."""
    require(actor, "checkpoint.create")
    urls = list(dict.fromkeys(urls))
    names = []
    for url in urls:
        try:
            safe_http.resolve_checked(url)
            names.append(download.resolve_filename(url))
        except (safe_http.RequestRefused, safe_http.TransientRequestError) as exc:
            raise Invalid(f"{url}: {exc}") from exc
    _check_names(names)
    created = []
    for url, name in zip(urls, names, strict=True):
        checkpoint = _new_checkpoint(
            actor=actor, type=type, status=CheckpointStatus.DOWNLOADING, params=params, names=[name]
        )
        checkpoint.source_url = url
        checkpoint.save(update_fields=["source_url"])
        send_after_commit(DOWNLOAD_ACTOR, str(checkpoint.pk))
        created.append(checkpoint)
    return created


def checkpoint_fail(checkpoint: Checkpoint, reason: str) -> None:
    """A visible failed state with the reason, and nothing left in storage. The state is written even when the
    store cannot be cleaned now (it is the store that failed): deleting the checkpoint cleans it later."""
    logger.warning("Checkpoint %s failed: %s", checkpoint.pk, reason)
    storage = get_storage()
    try:
        for file in checkpoint.files.exclude(upload_id=""):
            storage.multipart_abort(file.key, file.upload_id)
        storage.delete_prefix(checkpoint.folder + "/")
    except Exception:
        logger.exception("Could not clean the store after checkpoint %s failed", checkpoint.pk)
    checkpoint.files.update(upload_id="", size=None, sha256="")
    Checkpoint.objects.filter(pk=checkpoint.pk).update(
        status=CheckpointStatus.FAILED, error=reason[:4000], updated_at=timezone.now()
    )


def checkpoint_record_files(
    checkpoint: Checkpoint, stored: list[files.StoredFile], replaced: str | None = None
) -> None:
    """Record the checked files of a checkpoint; a tar's members replace the archive's own row."""
    existing = {file.name: file for file in checkpoint.files.all()}
    if replaced is not None and replaced not in {item.name for item in stored}:
        existing.pop(replaced).delete()
    position = max((file.position for file in existing.values()), default=-1) + 1
    for item in stored:
        file = existing.get(item.name)
        if file is None:
            if CheckpointFile.objects.filter(name=item.name).exists():
                raise files.FileRejected(f"the archive's file {item.name} already exists in another checkpoint")
            file = CheckpointFile(checkpoint=checkpoint, name=item.name, position=position)
            position += 1
        file.size, file.sha256, file.upload_id = item.size, item.sha256, ""
        file.format = "safetensors" if item.name.lower().endswith(files.SAFETENSORS) else "yaml"
        file.save()


# --- download leases (the run itself is in execution.py) ----------------------------------------------------------


def download_lease_end() -> datetime:
    return timezone.now() + timedelta(seconds=DOWNLOAD_LEASE_SECONDS)


def no_live_lease() -> Q:
    """Downloads no run holds now: never taken, finished, or their run stopped renewing the lease (it died)."""
    return Q(download_lease_until__isnull=True) | Q(download_lease_until__lt=timezone.now())


# A download is held by the run that renews its `download_lease_until` (execution.py's heartbeat)
DOWNLOADS = Lease(model=Checkpoint, waiting=Q(status=CheckpointStatus.DOWNLOADING), free=no_live_lease)


def checkpoint_create_from_upload(
    *, actor: User, type: str, name: str, chunks: Iterator[bytes], size: int | None = None
) -> Checkpoint:
    """A checkpoint from a file uploaded through the admin (or imported from the server's disk): stored, checked,
    and Active, or refused leaving nothing behind, neither row nor file.

    The file is stored and checked before its row is written, outside any transaction: a 7 GB upload takes minutes,
    and a transaction open that long would hold SQLite's one write lock from every other request and worker.
    `size`, when known (the admin's upload), is checked against the store's free space first."""
    require(actor, "checkpoint.create")
    _check_names([name])
    checkpoint_id = uuid.uuid4()
    folder = Checkpoint(id=checkpoint_id, type=type).folder
    storage = get_storage()
    limit = settings.ESD_MAX_CHECKPOINT_BYTES
    digest = hashlib.sha256()

    def hashed() -> Iterator[bytes]:
        done = 0
        for chunk in chunks:
            done += len(chunk)
            if done > limit:
                raise files.FileRejected(f"the file is larger than the {limit}-byte limit")
            digest.update(chunk)
            yield chunk

    try:
        if size is not None:
            if size > limit:
                raise files.FileRejected(f"the file is larger than the {limit}-byte limit")
            storage.check_room(f"{folder}/{name}", size)
        written = storage.write_stream(f"{folder}/{name}", hashed())
        stored = files.ingest(
            storage, folder=folder, name=name, limit=limit, sha256=digest.hexdigest(), size=written, kind=type
        )
        with transaction.atomic():
            checkpoint = _new_checkpoint(
                actor=actor, type=type, status=CheckpointStatus.ACTIVE, params={}, names=[name], id=checkpoint_id
            )
            checkpoint_record_files(checkpoint, stored, replaced=name)
    except BaseException as exc:
        try:
            storage.delete_prefix(folder + "/")
        except Exception:  # the store itself failed; nothing in the database names the folder
            logger.exception("Could not clean the store after a refused upload to %s", folder)
        if isinstance(exc, files.FileRejected | StorageError):
            raise Invalid(str(exc)) from exc
        raise
    return checkpoint


def checkpoint_upload_refused(*, key: str, reason: str, **kwargs: Any) -> int:
    """esd.signals.upload_refused receiver: the Initial checkpoint whose file the local store refused (larger than
    the cap, or no room) fails with the reason at once, its parts cleaned, rather than wait for a completion."""
    name = key.rpartition("/")[2]  # file names are unique: one row at most, if the key is its file's
    file = (
        CheckpointFile.objects.select_related("checkpoint")
        .filter(name=name, checkpoint__status=CheckpointStatus.INITIAL)
        .first()
    )
    if file is None or file.key != key:
        return 0
    checkpoint_fail(file.checkpoint, f"the upload of {name} was refused: {reason}")
    return 1


def checkpoint_fail_abandoned_uploads(*, older_than: float = 2 * URL_LIFETIME) -> int:
    """Initial checkpoints whose upload URLs expired long enough ago that no PUT begun in time can still be running:
    nothing will complete them, so they fail with the reason (their parts cleaned) rather than sit in Initial."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    count = 0
    for checkpoint in Checkpoint.objects.filter(status=CheckpointStatus.INITIAL, updated_at__lt=cutoff):
        checkpoint_fail(
            checkpoint,
            f"the upload was not completed within {older_than / 3600:g} h, when its URLs expired; upload the file "
            "again (a new checkpoint)",
        )
        count += 1
    return count


def checkpoint_resume_downloads(*, queues: set[str] | None = None, periodic: bool = False, **kwargs: Any) -> int:
    """esd.signals.recover_waiting_work receiver. When a process that runs downloads starts: send again every
    download the database says is unfinished (a running one finds itself taken). In the workers' periodic sweeps:
    only the downloads whose message the broker is known to have lost (checkpoint_requeue_lost_downloads)."""
    abandoned = checkpoint_fail_abandoned_uploads()
    if abandoned:
        logger.info("Failed %d upload(s) whose URLs expired before they were completed", abandoned)
    if periodic:
        return checkpoint_requeue_lost_downloads(older_than=settings.ESD_REQUEUE_AFTER_SECONDS)
    if queues is not None and actor_queue(DOWNLOAD_ACTOR) not in queues:
        return 0
    waiting = list(Checkpoint.objects.filter(status=CheckpointStatus.DOWNLOADING).values_list("pk", flat=True))
    for checkpoint_id in waiting:
        send(DOWNLOAD_ACTOR, str(checkpoint_id))
    if waiting:
        logger.info("Re-enqueued %d unfinished download(s)", len(waiting))
    return len(waiting)


def checkpoint_requeue_lost_downloads(*, older_than: float) -> int:
    """Send again the downloads nobody runs (no live lease) and no message will run: the broker lost it (a Redis
    restart without persistence) or it was never sent (the broker was down). Only where the broker can tell which
    messages it holds (esd.queues.pending_messages); each checkpoint is taken with a conditional UPDATE, so
    several sweeping workers send one message."""
    waiting = list(DOWNLOADS.lost(Checkpoint.objects.all(), older_than=older_than).only("pk", "updated_at"))
    if not waiting:
        return 0
    queue_name = actor_queue(DOWNLOAD_ACTOR)
    held = PendingMessages().first_args(queue_name)
    if held is None:
        return 0
    count = 0
    for checkpoint in waiting:
        if str(checkpoint.pk) not in held and DOWNLOADS.resend(
            checkpoint, message_for(DOWNLOAD_ACTOR, str(checkpoint.pk))
        ):
            count += 1
    if count:
        logger.info("Queued %d lost download(s) again", count)
    return count


# --- completion, status, rename, deletion -------------------------------------------------------------------------


def checkpoint_update_status(
    *, actor: User, checkpoint: Checkpoint, status: str, tags: dict[str, list[dict[str, Any]]] | None
) -> None:
    """`PUT /checkpoints/{id} {status[, multi_parts_tags]}`: complete the pending uploads (then check the files),
    or move a finished checkpoint between Active and Disabled."""
    if not may_change(actor, checkpoint):
        raise Forbidden(f"user {actor.username} may not change checkpoint {checkpoint.pk}")
    pending = list(checkpoint.files.exclude(upload_id=""))
    if checkpoint.status == CheckpointStatus.INITIAL:
        if not tags:
            raise Invalid("multi parts tags is empty")
        missing = [file.name for file in pending if not tags.get(file.name)]
        if missing:
            raise Invalid(f"multi_parts_tags has no ETags for {', '.join(missing)}: every file must be completed")
        if status == CheckpointStatus.INITIAL:
            raise Invalid("completing an upload needs status Active or Disabled")
        _complete(checkpoint, pending, tags)
        Checkpoint.objects.filter(pk=checkpoint.pk).update(status=status, error="", updated_at=timezone.now())
        return
    if tags:
        raise Invalid(f"checkpoint {checkpoint.pk} has no upload waiting to be completed (it is {checkpoint.status})")
    if checkpoint.status not in (CheckpointStatus.ACTIVE, CheckpointStatus.DISABLED) or status == "Initial":
        raise Invalid(f"a {checkpoint.status} checkpoint cannot become {status}")
    Checkpoint.objects.filter(pk=checkpoint.pk).update(status=status, updated_at=timezone.now())


def checkpoint_set_everyone(*, actor: User, checkpoints: list[Checkpoint], everyone: bool) -> int:
    """Open checkpoints to every user (ESD's `*` in their lists), or limit them again to the roles and users holding
    their view permission: all of them, or (when the actor may not change one) none."""
    for checkpoint in checkpoints:
        if not may_change(actor, checkpoint):
            raise Forbidden(f"user {actor.username} may not change checkpoint {checkpoint.pk}")
    return Checkpoint.objects.filter(pk__in=[checkpoint.pk for checkpoint in checkpoints]).update(
        everyone=everyone, updated_at=timezone.now()
    )


def _complete(checkpoint: Checkpoint, pending: list[CheckpointFile], tags: dict[str, list[dict[str, Any]]]) -> None:
    storage = get_storage()
    for file in pending:
        parts = sorted((int(tag["PartNumber"]), str(tag["ETag"])) for tag in tags[file.name])
        try:
            storage.multipart_complete(file.key, file.upload_id, parts)
        except StorageError as exc:
            # The upload stays open: the client may send the right ETags (or re-upload parts) and try again.
            raise Invalid(f"{file.name}: {exc}") from exc
        CheckpointFile.objects.filter(pk=file.pk).update(upload_id="")
    stored_all = []
    try:
        for file in pending:
            stored_all.append(
                (file.name, files.ingest(storage, folder=checkpoint.folder, name=file.name,
                                         limit=settings.ESD_MAX_CHECKPOINT_BYTES, kind=checkpoint.type))
            )  # fmt: skip
        with transaction.atomic():
            for name, stored in stored_all:
                checkpoint_record_files(checkpoint, stored, replaced=name)
    except files.FileRejected as exc:
        checkpoint_fail(checkpoint, str(exc))
        raise Invalid(f"the uploaded file was refused: {exc}") from exc


@transaction.atomic
def checkpoint_rename(*, actor: User, checkpoint: Checkpoint, name: str) -> bool:
    """`PUT /checkpoints/{id} {name}`: rename the first file (others are dropped, as in ESD). False when the name
    is already the current one. The schema allows no dots, so the extension goes too, as in ESD; the file's
    format is kept on its row."""
    if not may_change(actor, checkpoint):
        raise Forbidden(f"user {actor.username} may not change checkpoint {checkpoint.pk}")
    if checkpoint.status != CheckpointStatus.ACTIVE:
        raise Invalid("only active can update name")
    first = checkpoint.files.order_by("position").first()
    if first is None:
        raise Invalid("the checkpoint has no file to rename")
    if first.name == name:
        return False
    if CheckpointFile.objects.filter(name=name).exists():
        raise already_exists(name)
    storage = get_storage()
    old_key = first.key
    storage.copy(old_key, checkpoint.key(name))
    for other in checkpoint.files.exclude(pk=first.pk):
        storage.delete(other.key)
        other.delete()
    first.name = name
    first.save(update_fields=["name"])
    storage.delete(old_key)
    return True


def checkpoint_delete_check(*, actor: User, checkpoints: list[Checkpoint]) -> None:
    """Refuse (esd.errors) if `actor` may not delete every one of these checkpoints."""
    for checkpoint in checkpoints:
        if not may_change(actor, checkpoint):
            raise Forbidden(f"user {actor.username} may not delete checkpoint {checkpoint.pk}")


@transaction.atomic
def checkpoint_delete_many(*, actor: User, checkpoints: list[Checkpoint]) -> int:
    """`DELETE /checkpoints`: every checkpoint or, when one may not be deleted, none; files go too."""
    checkpoint_delete_check(actor=actor, checkpoints=checkpoints)
    storage = get_storage()
    for checkpoint in checkpoints:
        for file in checkpoint.files.exclude(upload_id=""):
            storage.multipart_abort(file.key, file.upload_id)
        storage.delete_prefix(checkpoint.folder + "/")
    Checkpoint.objects.filter(pk__in=[checkpoint.pk for checkpoint in checkpoints]).delete()
    return len(checkpoints)
