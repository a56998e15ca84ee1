"""Reads on inference jobs, with ESD's visibility (esd-behaviour.md §9.8), and what a job may use."""

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from statistics import median
from typing import Any

from django.db.models import Count, F, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleLessThan
from django.utils.dateparse import parse_datetime

from accounts import grants
from accounts.models import User
from accounts.permissions import holds
from checkpoints import selectors as checkpoint_selectors
from checkpoints.models import Checkpoint, CheckpointFile, CheckpointStatus, CheckpointType
from endpoints import selectors as endpoint_selectors
from endpoints.models import Endpoint, EndpointStatus, EndpointType
from esd.errors import Invalid

from .engine.errors import EngineError
from .engine.request.options import JobFiles, ModelFile
from .models import HELD, IN_PROGRESS, InferenceJob, InferenceType, JobState, JobStatus, TaskType


def sees_every_job(viewer: User) -> bool:
    return holds(viewer, "inference", "all") or holds(viewer, "user", "all")


def visible_jobs(viewer: User, jobs: QuerySet[InferenceJob]) -> QuerySet[InferenceJob]:
    """The jobs `viewer` owns or holds a view grant on (itself or through a role); all with inference:all or
    user:all."""
    if sees_every_job(viewer):
        return jobs
    return jobs.filter(grants.access(InferenceJob, sees=viewer, owns=viewer))


def inference_get(*, viewer: User | None, job_id: str) -> InferenceJob | None:
    """One job, or None when it does not exist or `viewer` may not see it (both answer 404).

    `viewer=None` skips the visibility check (esd-1.4 mode acting as the job's creator)."""
    try:
        uuid.UUID(job_id)
    except ValueError:
        return None
    jobs = InferenceJob.objects.filter(pk=job_id).select_related("created_by", "endpoint")
    return (jobs if viewer is None else visible_jobs(viewer, jobs)).first()


def encode_key(job: InferenceJob) -> str:
    raw = json.dumps({"created": job.created_at.isoformat(), "id": str(job.id)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_key(value: str) -> tuple[datetime, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(value.encode()))
        created = parse_datetime(data["created"])
        job_id = str(uuid.UUID(data["id"]))
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise Invalid("exclusive_start_key is not a key this server returned") from exc
    if created is None:
        raise Invalid("exclusive_start_key is not a key this server returned")
    return created, job_id


def inference_list(*, viewer: User, subject: User) -> QuerySet[InferenceJob]:
    """The jobs `viewer` may list as `subject`, by ESD's rule: those whose owner list names the subject or one of
    its roles, i.e. that the subject holds a view grant on (every job made here grants its creator, ESD's list
    `[user_id]`); every job for a viewer with inference:all or user:all listing as itself; none when listing as
    another without them."""
    jobs = InferenceJob.objects.select_related("created_by", "endpoint")
    if subject != viewer and not sees_every_job(viewer):
        return jobs.none()
    if subject != viewer or not sees_every_job(viewer):
        jobs = jobs.filter(grants.access(InferenceJob, sees=subject))
    return jobs


def keyset_page(
    jobs: QuerySet[InferenceJob], *, limit: int | None, start_key: str | None
) -> tuple[list[InferenceJob], str | None]:
    """Jobs newest first, keyset-paginated: each page is one index range scan from its key, whatever its depth.

    Without `limit` every job is returned (ESD 1.4.0 had no pagination); `last_evaluated_key` is then None.
    """
    if start_key:
        created, job_id = decode_key(start_key)
        # (created_at, id) < key as Django's tuple lookup: a row comparison on PostgreSQL, one index range scan;
        # SQLite gets Django's expansion (created_at < x OR created_at = x AND id < y), two ranges of the same index
        jobs = jobs.filter(TupleLessThan(Tuple(F("created_at"), F("id")), (created, uuid.UUID(job_id))))
    jobs = jobs.order_by("-created_at", "-id")
    if limit is None:
        everything = list(jobs)
        grants.attach_visibility(everything)
        return everything, None
    page = list(jobs[: limit + 1])
    grants.attach_visibility(page[:limit])
    if len(page) > limit:
        return page[:limit], encode_key(page[limit - 1])
    return page, None


@dataclass(frozen=True)
class GalleryFilter:
    """The gallery's filters (empty: any)."""

    model: str = ""
    sampler: str = ""
    endpoint: str = ""
    user: str = ""  # a creator's username: only for viewers who see every job
    since: date | None = None
    until: date | None = None  # inclusive


def gallery_jobs(*, viewer: User, where: GalleryFilter) -> QuerySet[InferenceJob]:
    """The succeeded generations with pictures that `viewer` may see, filtered; newest first through keyset_page."""
    jobs = visible_jobs(
        viewer,
        InferenceJob.objects.filter(
            status=JobStatus.SUCCEED, task_type__in=(TaskType.TXT2IMG, TaskType.IMG2IMG)
        ).exclude(image_names=[]),
    ).select_related("created_by")
    if where.model:
        jobs = jobs.filter(model_name=where.model)
    if where.sampler:
        jobs = jobs.filter(sampler_name=where.sampler)
    if where.endpoint:
        jobs = jobs.filter(endpoint_name=where.endpoint)
    if where.user and sees_every_job(viewer):
        jobs = jobs.filter(created_by__username=where.user)
    if where.since:
        jobs = jobs.filter(created_at__date__gte=where.since)
    if where.until:
        jobs = jobs.filter(created_at__date__lte=where.until)
    return jobs


def gallery_choices(jobs: QuerySet[InferenceJob]) -> dict[str, list[str]]:
    """The values the gallery's filters offer: those its visible pictures have."""
    return {
        field: sorted(value for value in jobs.order_by().values_list(field, flat=True).distinct() if value)
        for field in ("model_name", "sampler_name", "endpoint_name")
    }


def usable_checkpoints(*, user: User, type: str, name: str | None = None) -> list[Checkpoint]:
    """Active checkpoints of `type` (with file `name`, if given) that `user` may use, oldest first."""
    candidates = Checkpoint.objects.filter(
        checkpoint_selectors.visible_to(user), type=type, status=CheckpointStatus.ACTIVE
    ).prefetch_related("files")
    if name is not None:
        candidates = candidates.filter(files__name=name)
    return list(candidates.order_by("created_at", "id"))


def usable_checkpoint(*, user: User, type: str, name: str) -> Checkpoint | None:
    """The Active checkpoint of `type` with file `name` that `user` may use (ESD: first match)."""
    found = usable_checkpoints(user=user, type=type, name=name)
    return found[0] if found else None


def endpoint_type_for(inference_type: str) -> str:
    return EndpointType.REAL_TIME if inference_type == InferenceType.REAL_TIME else EndpointType.ASYNC


def runs_on_cpu(endpoint: Endpoint) -> bool:
    """Whether the endpoint's jobs run on a CPU: its live workers say so, or, with none, its instance type."""
    devices = set(endpoint.workers.filter(stopped_at__isnull=True).values_list("device", flat=True))
    if devices:
        return all(device.startswith("cpu") for device in devices)
    return endpoint.instance_type == "cpu"


def usable_endpoints(*, user: User, inference_type: str) -> list[Endpoint]:
    """InService endpoints of the job's type that the user's roles may use (an Async one scaled to zero counts)."""
    endpoints = Endpoint.objects.filter(
        endpoint_selectors.usable_by(user), endpoint_type=endpoint_type_for(inference_type)
    ).exclude(status=EndpointStatus.DELETING)
    found = [endpoint_selectors.endpoint_current(endpoint) for endpoint in endpoints]
    return [endpoint for endpoint in found if endpoint.status == EndpointStatus.IN_SERVICE]


def endpoint_backlog(endpoint: Endpoint) -> tuple[int, int]:
    """The endpoint's jobs in progress as (waiting, held by a live worker): the autoscaling signal's database half."""
    from .transitions import unclaimed_or_orphaned

    counts = InferenceJob.objects.filter(endpoint=endpoint, state__in=IN_PROGRESS).aggregate(
        waiting=Count("pk", filter=unclaimed_or_orphaned()), total=Count("pk")
    )  # one query: /metrics asks it of every endpoint at every scrape
    return counts["waiting"], counts["total"] - counts["waiting"]


@dataclass
class Dashboard:
    """What the admin's index shows a person: where their jobs can run, what waits, what runs, what came out."""

    endpoints: list[Any]  # rows of (endpoint, live workers, queued messages, backlog)
    queued: int
    running: int
    recent: list[InferenceJob]


def dashboard(*, viewer: User, recent: int = 8) -> Dashboard:
    from endpoints.autoscaling import scaling

    rows = []
    for endpoint in endpoint_selectors.endpoint_list(viewer=viewer, subject=viewer):
        live = getattr(endpoint, "live_count", 0)
        state = scaling(endpoint, live, 0)
        rows.append((endpoint, live, state.queue_depth, state.backlog))
    jobs = visible_jobs(viewer, InferenceJob.objects.all())
    return Dashboard(
        endpoints=rows,
        queued=jobs.filter(state=JobState.QUEUED).count(),
        running=jobs.filter(state__in=HELD).count(),
        recent=list(jobs.filter(status=JobStatus.SUCCEED).exclude(image_names=[]).order_by("-created_at")[:recent]),
    )


def job_result_document(job: InferenceJob) -> dict[str, Any] | None:
    """The job's `{id}_param.json` as the worker wrote it (parameters, A1111's info, ignored keys), or None when
    there is none (not finished, or the store cannot be read now)."""
    from esd.storage import StorageError, get_storage

    if not job.image_names:
        return None
    storage = get_storage()
    try:
        size = storage.size(job.result_key)
        if size is None or size > 4 * 1024 * 1024:
            return None
        document = json.loads(storage.read_range(job.result_key, 0, size))
    except (StorageError, OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


PAYLOAD_SUMMARY_BYTES = 256 * 1024  # a txt2img payload; one carrying pictures is summed up when it finishes


def job_payload(job: InferenceJob, max_bytes: int) -> dict[str, Any] | None:
    """The payload the job runs (the copy frozen at start, or the uploaded one before), or None when there is none,
    it is larger than `max_bytes`, or it is not a JSON object."""
    from esd.storage import StorageError, get_storage

    storage = get_storage()
    try:
        size = storage.size(job.input_key)
        if size is None or size > max_bytes:
            return None
        payload = json.loads(storage.read_range(job.input_key, 0, size))
    except (StorageError, OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def job_payload_summary(job: InferenceJob) -> dict[str, Any]:
    """The parameters of a job not finished yet, from its payload: what its page shows while it runs. Empty when
    there is none or it is large."""
    payload = job_payload(job, PAYLOAD_SUMMARY_BYTES) or {}
    return {key: value for key, value in payload.items() if isinstance(value, str | int | float) and key != "image"}


SPEED_JOBS = 20  # the recent jobs an endpoint's speed is the median of


def endpoint_speed(endpoint: Endpoint) -> tuple[float, int] | None:
    """The endpoint's measured speed: the median UNet seconds per megapixel-step of its last SPEED_JOBS generations
    (their workers record it), and how many that was; None before any has run."""
    recorded = (
        InferenceJob.objects.filter(endpoint=endpoint, status=JobStatus.SUCCEED, complete_time__isnull=False)
        .order_by("-complete_time")
        .values_list("timings", flat=True)[: SPEED_JOBS * 3]
    )
    rates = [
        float(t["unet_seconds_per_megapixel_step"]) for t in recorded if t and "unet_seconds_per_megapixel_step" in t
    ]
    rates = rates[:SPEED_JOBS]
    return (median(rates), len(rates)) if rates else None


def prompt_network_files(*, user: User, prompts: list[str]) -> dict[str, list[str]]:
    """The LoRA files the prompts' `<lora:name:weight>` tags name and the embedding files they mention by name,
    among the checkpoints `user` may use: what an ESD client attaches to a job for the same prompt (the admin's
    Generate page, whose jobs otherwise lacked them: "it has: none")."""
    from .engine.request.model_names import names_model
    from .engine.request.prompts import extract_networks
    from .engine.request.tokens import occurs, token_ids

    split = [extract_networks(prompt) for prompt in prompts]
    tags = [tag.name for _, networks in split for tag in networks if tag.kind == "lora"]
    texts = [token_ids(text) for text, _ in split]

    def named(kind: str, wanted: Callable[[str], bool]) -> list[str]:
        names = {name for checkpoint in usable_checkpoints(user=user, type=kind) for name in checkpoint.names}
        return sorted(name for name in names if wanted(name))

    found = {
        CheckpointType.LORA: named(CheckpointType.LORA, lambda name: any(names_model(tag, name) for tag in tags)),
        CheckpointType.EMBEDDINGS: named(
            CheckpointType.EMBEDDINGS,
            lambda name: any(occurs(ids, token_ids(name.rsplit(".", 1)[0])) for ids in texts),
        ),
    }
    return {kind: names for kind, names in found.items() if names}


def job_files(job: InferenceJob, locate: Callable[[CheckpointFile], Path]) -> JobFiles:
    """The job's model files by type, each at the path `locate` gives for its row: the worker's verified cache, or
    the object's key in the store for the API server's estimates (which read headers only). A model deleted since
    the job was created fails it, naming the model."""

    def of(kind: str) -> tuple[ModelFile, ...]:
        found = []
        for entry in job.used_models.get(kind, []):
            if entry["id"] == "VAE":  # Automatic / None: the checkpoint's own VAE
                continue
            row = CheckpointFile.objects.filter(checkpoint_id=entry["id"], name=entry["model_name"]).first()
            if row is None:
                raise EngineError(f"the model {entry['model_name']} was deleted before the job ran")
            found.append(ModelFile(path=locate(row), name=row.name, sha256=row.sha256))
        return tuple(found)

    checkpoints = of(CheckpointType.STABLE_DIFFUSION)
    return JobFiles(
        checkpoint=checkpoints[0] if checkpoints else None, checkpoints=checkpoints, vaes=of(CheckpointType.VAE),
        loras=of(CheckpointType.LORA), embeddings=of(CheckpointType.EMBEDDINGS),
        controlnets=of(CheckpointType.CONTROLNET), upscalers=of(CheckpointType.UPSCALER),
    )  # fmt: skip
