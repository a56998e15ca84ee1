"""Writes on inference jobs: create, start, cancel, delete, and recovery after restarts.

Wire behaviour from esd-behaviour.md §9; flows from architecture.md §3. The worker side (claiming, running,
writing results) is in execution.py.
"""

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from accounts import grants
from accounts.access import require
from accounts.models import User
from accounts.permissions import holds
from checkpoints.files import PICKLE_EXTENSIONS
from checkpoints.models import Checkpoint, CheckpointStatus, CheckpointType
from endpoints.models import QUEUE_PREFIX, Endpoint, EndpointStatus, Worker
from endpoints.selectors import endpoint_usable_by
from endpoints.services import endpoint_refresh
from esd.errors import Invalid, NotFound, Refused, Unavailable
from esd.leases import PendingMessages
from esd.storage import StorageError, get_storage

from . import completion, messages, selectors, transitions, webhooks
from .engine.errors import EngineError
from .engine.request.identify import read_entries
from .engine.request.memory import check_fits, default_budget, machine_memory
from .engine.request.options import ModelFile
from .engine.request.payload import Generation, load_payload, unhonoured_message
from .engine.request.plan import JobPlan, plan_job, plan_to_json
from .engine_options import engine_limits
from .models import HELD, IN_PROGRESS, InferenceJob, InferenceType, JobState, TaskType

logger = logging.getLogger(__name__)

GENERATION_TASKS = (TaskType.TXT2IMG, TaskType.IMG2IMG)
TASK_LIST_MESSAGE = (
    "task type {t} should be in ['extra-single-image', 'extra-batch-images', 'rembg'] or ['txt2img', 'img2img']"
)
PSEUDO_VAES = ("Automatic", "None")
URL_LIFETIME = 3600


def not_found(job_id: str) -> Refused:
    return NotFound(f"inference with id {job_id} not found")


def may_change(actor: User, job: InferenceJob) -> bool:
    return holds(actor, "inference", "all") or (holds(actor, "inference", "create") and grants.owns(actor, job))


def _resolve_models(actor: User, models: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """`{type: [file names]}` → ESD's used_models, every name an Active checkpoint the actor may use."""
    used: dict[str, list[dict[str, Any]]] = {}
    missing: list[str] = []
    for model_type, names in models.items():
        if not isinstance(names, list):
            continue
        for name in names:
            if not isinstance(name, str):
                continue
            if model_type == CheckpointType.VAE and name in PSEUDO_VAES:
                used.setdefault(model_type, []).append({"id": "VAE", "model_name": name, "s3": "None", "type": "VAE"})
                continue
            checkpoint = selectors.usable_checkpoint(user=actor, type=model_type, name=name)
            if checkpoint is None and name.lower().endswith(PICKLE_EXTENSIONS):
                # The WebUI names the file it has (control_v11p_sd15_canny.pth); this server holds only the
                # .safetensors release of a model, so that is the one the name means.
                safe = name.rsplit(".", 1)[0] + ".safetensors"
                checkpoint = selectors.usable_checkpoint(user=actor, type=model_type, name=safe)
                name = safe if checkpoint is not None else name
            if checkpoint is None:
                missing.append(f"checkpoint with name {name}, type {model_type} is not found")
                continue
            used.setdefault(model_type, []).append(
                {
                    "id": str(checkpoint.pk),
                    "model_name": name,
                    "s3": get_storage().uri(checkpoint.folder),
                    "type": model_type,
                }
            )
    if missing:
        raise Invalid(" ".join(missing))
    return used


def _pick_endpoint(actor: User, inference_type: str, name: str | None) -> Endpoint:
    if name:
        endpoint = Endpoint.objects.filter(name=name).first()
        if endpoint is None or not endpoint_usable_by(actor, endpoint):
            raise Invalid(f"sagemaker endpoint with name {name} is not found")
        endpoint = endpoint_refresh(endpoint)
        if endpoint.status != EndpointStatus.IN_SERVICE:
            raise Invalid(f"sagemaker endpoint is not ready with status: {endpoint.status}")
        return endpoint
    candidates = selectors.usable_endpoints(user=actor, inference_type=inference_type)
    if not candidates:
        raise Invalid(f'no available {inference_type} endpoints for user "{actor.username}"')
    # The least busy first (ESD picked at random): queued jobs per live worker.
    return min(candidates, key=lambda endpoint: InferenceJob.objects.filter(
        endpoint=endpoint, state__in=IN_PROGRESS).count())  # fmt: skip


@transaction.atomic
def inference_create(
    *, actor: User, task_type: str, inference_type: str, models: dict[str, Any], endpoint_name: str | None = None
) -> InferenceJob:
    require(actor, "inference.create")
    if task_type not in TaskType.values:
        raise Invalid(TASK_LIST_MESSAGE.format(t=task_type))
    endpoint = _pick_endpoint(actor, inference_type, endpoint_name)  # ESD answers "no available ..." here already
    # Generations use every model type; extra-single-image only its upscalers (ESD clients send their current
    # checkpoint with every task, and a background removal or Lanczos upscale must not depend on it).
    if task_type not in GENERATION_TASKS:
        models = {CheckpointType.UPSCALER: models[CheckpointType.UPSCALER]} if CheckpointType.UPSCALER in models else {}
    used = _resolve_models(actor, models)
    if task_type in GENERATION_TASKS and not used.get(CheckpointType.STABLE_DIFFUSION):
        raise Invalid(f"a {task_type} inference needs a Stable-diffusion model in models")
    job = InferenceJob(
        task_type=task_type,
        inference_type=inference_type,
        created_by=actor,
        used_models=used,
        endpoint=endpoint if endpoint_name else None,
        endpoint_name=endpoint.name if endpoint_name else "",
    )
    job.payload_url = get_storage().presign_put(
        job.payload_key, expires=URL_LIFETIME, max_bytes=settings.ESD_MAX_PAYLOAD_BYTES
    )
    job.save()
    grants.grant_new(job, owner=actor, owner_views=True)  # ESD's owner list, [user_id]: the account, not its name
    return job


def _check_models_still_usable(actor: User, job: InferenceJob) -> None:
    for model_type, entries in job.used_models.items():
        for entry in entries:
            if entry["id"] == "VAE":
                continue
            checkpoint = Checkpoint.objects.filter(pk=entry["id"], status=CheckpointStatus.ACTIVE).first()
            if (
                checkpoint is None
                or selectors.usable_checkpoint(user=actor, type=model_type, name=entry["model_name"]) != checkpoint
            ):
                raise Invalid(f"checkpoint with name {entry['model_name']}, type {model_type} is not found")


def _read_payload(job: InferenceJob) -> bytes:
    storage = get_storage()
    size = storage.size(job.payload_key)
    if size is None:
        raise Invalid(
            f"the payload of inference {job.id} has not been uploaded: PUT api_param.json to api_params_s3_upload_url",
        )
    if size > settings.ESD_MAX_PAYLOAD_BYTES:
        raise Invalid(f"the payload is {size} bytes; at most {settings.ESD_MAX_PAYLOAD_BYTES} are accepted")
    with storage.open(job.payload_key) as stream:
        return stream.read()


def _refuse(job: InferenceJob, message: str) -> Refused:
    """A start that cannot go ahead: the job stays `created`, with the reason kept on it."""
    transitions.refuse(job, message)
    return Invalid(message)


def _plan(job: InferenceJob, raw: bytes) -> JobPlan:
    """The job's plan, from its payload and its model files in the store (their headers read, a few kilobytes
    each); pictures are checked by their headers only: the web process never holds decoded pictures."""
    files = selectors.job_files(job, lambda row: Path(row.key))
    storage = get_storage()

    def header_of(model: ModelFile) -> dict[str, dict[str, object]]:
        return read_entries(model.name, lambda start, length: storage.read_range(str(model.path), start, length))

    limits = replace(engine_limits(), load_images=False)
    return plan_job(job.task_type, load_payload(raw), files, limits, header_of)


def _check_memory(plan: JobPlan) -> None:
    """Refuse at start a job that cannot fit a worker (the worker checks again with its own device and dtype)."""
    if plan.memory is None:
        return
    dtype_bytes = 2 if settings.ESD_ENGINE_DTYPE in ("fp16", "bf16", "fp8") else 4  # auto: a CPU worker's fp32
    budget = settings.ESD_WORKER_MEMORY_BYTES or default_budget(machine_memory())
    check_fits(plan.memory.estimate(dtype_bytes), budget, "a worker has")


def _check_time(plan: JobPlan, endpoint: Endpoint) -> None:
    """Refuse at start a generation that cannot finish within ESD_INFERENCE_TIME_LIMIT on this endpoint, estimated
    from its workers' measured speed (UNet seconds per megapixel-step, the median of its recent jobs) times the job's
    denoising work. Pixels are counted linearly, which undercounts attention at large sizes: only jobs that surely
    cannot finish are refused. An endpoint that has run nothing yet has no speed, and admits."""
    request = plan.request
    if not isinstance(request, Generation):
        return
    speed = selectors.endpoint_speed(endpoint)
    if speed is None:
        return
    rate, measured = speed
    seconds = rate * plan.work
    limit = settings.ESD_INFERENCE_TIME_LIMIT
    if seconds > limit:
        width, height = request.largest_size
        raise EngineError(
            f"this job would take about {seconds:.0f} s on {endpoint.name} ({request.total_images} image(s), "
            f"{request.steps} steps, up to {width}x{height}; its last {measured} job(s) ran at {rate:.3g} s per "
            f"megapixel-step), more than the {limit} s a job may run (ESD_INFERENCE_TIME_LIMIT); lower steps, "
            "width/height or batch_size, or use a faster endpoint"
        )


def _store_plan(job: InferenceJob, plan: JobPlan) -> dict[str, Any]:
    storage = get_storage()

    def put_blob(name: str, data: bytes) -> None:
        storage.write_stream(job.plan_folder + name, [data])

    return plan_to_json(plan, put_blob)


def inference_start(*, actor: User, job: InferenceJob) -> InferenceJob:
    """Check the job can run, bind it to an endpoint and queue it. Only from `created` (ESD allowed restarts)."""
    if not may_change(actor, job):
        raise not_found(str(job.id))
    if job.state != JobState.CREATED:
        raise Invalid(f"inference {job.id} has already been started (status {job.status})")
    try:
        _check_models_still_usable(actor, job)
        raw = _read_payload(job)
        plan = _plan(job, raw)
        if settings.ESD_UNHONOURED_PARAMETERS == "refuse" and plan.ignored:
            raise EngineError(unhonoured_message(plan.ignored))
        _check_memory(plan)
        endpoint = _pick_endpoint(actor, job.inference_type, job.endpoint_name or None)
        _check_time(plan, endpoint)
        get_storage().write_stream(job.started_payload_key, [raw])  # the payload as checked, for the record
        stored_plan = _store_plan(job, plan)  # what runs
    except EngineError as exc:
        raise _refuse(job, f"the payload (api_param.json) cannot run: {exc}") from exc
    except Refused as exc:
        raise _refuse(job, exc.message) from exc
    except StorageError as exc:
        raise Unavailable(f"storage is unavailable: {exc}") from exc
    message = messages.job_message(str(job.pk), endpoint.queue_name)
    with transaction.atomic():
        started = transitions.start(
            job,
            endpoint,
            message,
            prompt=getattr(plan.request, "prompt", ""),
            ignored=plan.ignored,
            plan=stored_plan,
            batch_key=plan.batch_key,
            image_count=plan.image_count,
            model_name=plan.models.checkpoint.name if plan.models.checkpoint is not None else "",
            sampler_name=getattr(plan.request, "sampler", ""),
        )
        if not started:  # a concurrent start won
            raise Invalid(f"inference {job.id} has already been started")
        transaction.on_commit(lambda: messages.send(str(job.pk), message))
    job.refresh_from_db()
    webhooks.webhook_queue(job, "started")
    return job


def inference_wait(*, job: InferenceJob, timeout: float) -> InferenceJob | None:
    return completion.wait_finished(str(job.pk), timeout)


def inference_cancel(*, actor: User, job: InferenceJob) -> InferenceJob:
    """Created or queued: failed (cancelled) at once. Running: stopped by its worker at the next step."""
    if not may_change(actor, job):
        raise not_found(str(job.id))
    if job.finished:
        raise Invalid(f"inference {job.id} has already finished (status {job.status})")
    transitions.cancel(job, f"cancelled by {actor.username}")
    job.refresh_from_db()
    return job


def inference_delete_many(*, actor: User, jobs: list[InferenceJob]) -> int:
    """Delete the jobs the actor may change, with their payloads and outputs (ESD left outputs behind).
    A running job is asked to stop first; its worker finds the row gone and abandons it."""
    storage = get_storage()
    deleted = 0
    for job in jobs:
        if not may_change(actor, job):
            continue
        InferenceJob.objects.filter(pk=job.pk, state__in=HELD).update(state=JobState.CANCELLING)
        storage.delete_prefix(f"{job.task_type}/infer_v2/{job.id}/")
        storage.delete_prefix(job.result_folder)
        deleted += InferenceJob.objects.filter(pk=job.pk).delete()[0] > 0
    return deleted


def inference_recover(
    *, queues: set[str] | None = None, worker: Worker | None = None, periodic: bool = False, **kwargs: Any
) -> int:
    """esd.signals.recover_waiting_work receiver. At a worker's start: queue again every waiting job whose message
    the broker may have lost (all of them, where the broker cannot be asked). Every ESD_REQUEUE_AFTER_SECONDS
    while it runs (periodic): only the jobs known to have lost theirs, waiting that long (inference_requeue_lost)."""
    if periodic:
        return inference_requeue_lost(queues=queues, worker=worker, older_than=settings.ESD_REQUEUE_AFTER_SECONDS)
    return inference_requeue_lost(queues=queues, worker=None, older_than=0.0, unknown_is_lost=True)


def inference_requeue_lost(
    *,
    queues: set[str] | None,
    worker: Worker | None,
    older_than: float,
    unknown_is_lost: bool = False,
) -> int:
    """Queue again the waiting jobs of `queues` that no message will run: never sent (the broker was down), gone
    from a broker that restarted without persistence, or held by `worker` (this process) while it runs none of
    them (its database went away mid-job). Jobs whose worker died mid-run are retried up to MAX_ATTEMPTS runs, then
    fail saying so. Each job is taken with a conditional UPDATE, so sweeps of several workers send one message."""
    from .execution import running_here

    jobs = InferenceJob.objects.all()
    if queues is not None:
        jobs = jobs.filter(endpoint__name__in=[name.removeprefix(QUEUE_PREFIX) for name in queues])
    held_idle = Q(worker=worker) & ~Q(pk__in=running_here()) if worker is not None else Q(pk__in=[])
    # asked to stop, then their worker died (or, held here, this process let go of them): no message will end them
    transitions.cancel_orphans(jobs, held_idle)
    waiting = transitions.JOBS.lost(jobs.filter(endpoint__isnull=False), older_than=older_than, also=held_idle)
    waiting = waiting.select_related("endpoint")
    count = 0
    pending = PendingMessages()  # what the broker holds per queue, asked once per sweep
    for job in waiting:
        assert job.endpoint is not None
        queue_name = job.endpoint.queue_name
        if job.attempts >= transitions.MAX_ATTEMPTS:
            transitions.fail(str(job.pk), f"its worker stopped during each of {job.attempts} attempts")
            continue
        held_here = worker is not None and job.worker_id == worker.pk
        # claimed by a worker that died since: its message went with it on the in-process broker, and a broker that
        # cannot be asked may have lost it too (a duplicate finds the job claimed and is dropped)
        taken_by_the_dead = job.claimed_at is not None and not held_here
        if job.message_id and not held_here:
            known = pending.ids(queue_name)
            if known is None and not unknown_is_lost and not taken_by_the_dead:
                continue
            if known is not None and job.message_id in known:
                continue
        message = messages.job_message(str(job.pk), queue_name)
        if transitions.requeue(job, message, let_go=held_here):
            count += 1
    if count:
        logger.info("Queued %d waiting inference job(s) again", count)
    return count


def inference_submit(
    *, actor: User, task_type: str, models: dict[str, list[str]], payload: dict[str, Any]
) -> InferenceJob:
    """The admin's Generate page: create an Async job, store its payload and start it, as an ESD client would."""
    import json

    job = inference_create(actor=actor, task_type=task_type, inference_type=InferenceType.ASYNC, models=models)
    get_storage().write_stream(job.payload_key, [json.dumps(payload).encode()])
    return inference_start(actor=actor, job=job)
