"""The worker side of a job: claim it, fetch its files, run the engine, write the outputs, finish it.

Called by the `inference_run` actor on the endpoint's queue. Every change of the job's state is transitions.py's
(a claim is one conditional UPDATE, so a redelivered message or a second worker does nothing twice; a job whose
worker died may be claimed again); this module runs the engine and the storage around them.
"""

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone
from dramatiq.middleware import TimeLimitExceeded

from checkpoints.cache import CacheError, cached_path
from checkpoints.models import CheckpointFile
from endpoints.models import Worker
from esd import shutdown
from esd.storage import StorageError, get_storage

from . import messages, transitions
from .batching import take_companions
from .engine.errors import Cancelled, EngineError
from .engine.request.options import ModelFile
from .engine.request.plan import JobPlan, plan_from_json
from .engine.runner import PlannedJob
from .engine_options import engine_for
from .finisher import FINISHER
from .models import InferenceJob, JobState, TaskType

logger = logging.getLogger(__name__)

PROGRESS_WRITE_SECONDS = 0.5
CANCEL_CHECK_SECONDS = 0.2


class TransientJobError(Exception):
    """Storage or the model cache failed in a way a retry may fix; the claim is released first."""


class JobProgress:
    """The engine's step callback: progress on the row (throttled), the row's cancel flag, and the live preview
    (every ESD_PREVIEW_EVERY steps, at most one per PROGRESS_WRITE_SECONDS, never after the last step)."""

    def __init__(self, job_id: str, preview_every: int | None = None) -> None:
        self.job_id = job_id
        self.preview_every = settings.ESD_PREVIEW_EVERY if preview_every is None else preview_every
        self._written = 0.0
        self._previewed = float("-inf")
        self._checked = 0.0
        self._cancelled = False
        self._total = 0

    def step(self, done: int, total: int) -> None:
        self._total = total
        now = time.monotonic()
        if done >= total or now - self._written >= PROGRESS_WRITE_SECONDS:
            self._written = now
            InferenceJob.objects.filter(pk=self.job_id).update(progress_step=done, progress_total=total)

    def wants_preview(self, done: int) -> bool:
        return (
            self.preview_every > 0
            and done % self.preview_every == 0
            and done < self._total
            and time.monotonic() - self._previewed >= PROGRESS_WRITE_SECONDS
        )

    def preview(self, picture: bytes) -> None:
        self._previewed = time.monotonic()
        InferenceJob.objects.filter(pk=self.job_id, state=JobState.RUNNING).update(preview=picture)

    def cancelled(self) -> bool:
        if shutdown.interrupted.is_set():  # the process is stopping past its grace: stop here, put back after
            return True
        now = time.monotonic()
        if not self._cancelled and now - self._checked >= CANCEL_CHECK_SECONDS:
            self._checked = now
            state = InferenceJob.objects.filter(pk=self.job_id).values_list("state", flat=True).first()
            self._cancelled = state in (None, JobState.CANCELLING, JobState.CANCELLED)  # a deleted job is abandoned
        return self._cancelled


_running: set[str] = set()
_running_lock = threading.Lock()


def running_here() -> list[str]:
    """The jobs this process's worker threads are running now."""
    with _running_lock:
        return list(_running)


def claim(job_id: str, worker: Worker | None) -> InferenceJob | None:
    """Take the job if it is queued, or if the worker that took it is dead, or if it is held by this very worker
    but no thread here runs it (a run that lost its database before it could let go). None: nothing to do."""
    return transitions.claim(job_id, worker)


def _cached(file: CheckpointFile) -> Path:
    """A model file on local disk: the worker's model cache, verified by sha256."""
    try:
        return cached_path(file)
    except CacheError as exc:
        raise TransientJobError(str(exc)) from exc


def _write_outputs(job: InferenceJob, result: Any) -> list[str]:
    storage = get_storage()
    if job.task_type in (TaskType.TXT2IMG, TaskType.IMG2IMG):
        names = [f"image_{index}.png" for index in range(len(result.images))]
        document: dict[str, Any] = result.document()
    else:
        names = ["image.png"] if result.images else []
        document = {"html_info": result.info["html_info"]} if "html_info" in result.info else {}
    for name, png in zip(names, result.images, strict=True):
        storage.write_stream(job.result_folder + name, [png])
    document |= {"endpont_name": job.endpoint_name, "inference_id": str(job.id)}  # ESD's spelling, kept
    storage.write_stream(job.result_key, [json.dumps(document).encode()])
    return names


def inference_execute(*, job_id: str, worker: Worker | None, device: str, pipelined: bool = False) -> None:
    """Run the job of one message (and any batched with it). `pipelined` (a worker's actor): each succeeded job's
    pictures are stored by the finisher while this thread goes back to the queue; otherwise (commands, tests) they
    are stored before this returns."""
    with _running_lock:
        if job_id in _running:  # a second message for a job a thread here is running
            logger.info("Job %s is running in this process already; message dropped", job_id)
            return
        _running.add(job_id)
    handed: set[str] = set()  # jobs the finisher settles (and forgets in _running once it has)
    try:
        _execute(job_id, worker, device, handed if pipelined else None)
    except DatabaseError as exc:
        # The database went away mid-job (a restart, a dropped connection). Let go of the job if it can be
        # reached again and have the message retried; if not, the job stays held by this worker, which may claim
        # it again (claim) and whose periodic sweep queues it again (services.inference_requeue_lost).
        connection.close()
        try:
            transitions.release(job_id, worker.pk if worker else None)
        except DatabaseError:
            connection.close()
        raise TransientJobError(f"the database was unavailable: {exc}") from exc
    finally:
        with _running_lock:
            if job_id not in handed:
                _running.discard(job_id)


def _execute(job_id: str, worker: Worker | None, device: str, handed: set[str] | None) -> None:
    job = claim(job_id, worker)
    if job is None:
        logger.info("Job %s is not waiting (finished, cancelled, deleted or taken); message dropped", job_id)
        return
    companions = take_companions(job, worker, device)
    with _running_lock:
        _running.update(str(companion.pk) for companion in companions)
    try:
        _run([job, *companions], worker, device, handed)
    except TimeLimitExceeded:
        # dramatiq's watchdog interrupted the run (the job's message carries ESD_INFERENCE_TIME_LIMIT): the jobs
        # still held here fail with the reason, and the message ends here, so the worker goes on serving.
        limit = settings.ESD_INFERENCE_TIME_LIMIT
        reason = f"stopped: the job ran past the time limit of {limit} s (ESD_INFERENCE_TIME_LIMIT)"
        worker_id = worker.pk if worker else None
        for held in [job, *companions]:
            _fail(str(held.pk), worker_id, reason)
        logger.warning("Job %s: %s", job_id, reason)
    finally:
        with _running_lock:
            _running.difference_update(
                str(companion.pk) for companion in companions if str(companion.pk) not in (handed or ())
            )


@dataclass
class _Run:
    """One job on this worker: what it read before the engine ran, and when."""

    job: InferenceJob
    started: float
    queued: float
    plan: JobPlan | None = None  # its model files at local paths
    fetch_seconds: float = 0.0
    failure: Exception | None = None  # reading its plan or files failed (plan is None): it does not reach the engine


def _run(jobs: list[InferenceJob], worker: Worker | None, device: str, handed: set[str] | None = None) -> None:
    """Run the jobs (the claimed one first, then any batched with it) and settle each on its own: one job's bad
    input or lost file fails or retries that job only. `handed`: the succeeded ones go to the finisher (their ids
    added to it), which stores their pictures while this thread takes its next message."""
    worker_id = worker.pk if worker else None
    runs = [_prepared(job) for job in jobs]
    engine_started = time.monotonic()
    batch = [PlannedJob(run.plan, JobProgress(str(run.job.pk))) for run in runs if run.plan is not None]
    outcomes: list[Any]
    try:
        outcomes = engine_for(device).run_batch(batch)  # a lone job too: it runs as Engine.run runs it
    except Exception as exc:  # a fault of the batching itself, not of one job: each job says so
        outcomes = [exc] * len(batch)
    engine_seconds = time.monotonic() - engine_started
    ran = iter(outcomes)
    batch_id = uuid.uuid4()
    for index, run in enumerate(runs):
        outcome = run.failure or next(ran)
        if handed is None or isinstance(outcome, BaseException):
            _settle(run, worker_id, outcome, engine_seconds, batch_id, retry_message=index == 0)
            continue
        job_id = str(run.job.pk)
        finished = partial(_settle, run, worker_id, outcome, engine_seconds, batch_id, retry_message=False,
                           message_spent=index == 0)  # fmt: skip
        # handed over once submitted (a time limit may interrupt the wait for room): the finisher forgets it then
        FINISHER.submit(finished, done=partial(_forget, job_id))
        handed.add(job_id)


def _forget(job_id: str) -> None:
    with _running_lock:
        _running.discard(job_id)


def _prepared(job: InferenceJob) -> _Run:
    """The job's plan, as `start` stored it, with its model files fetched into this worker's cache."""
    run = _Run(job, time.monotonic(), (timezone.now() - job.start_time).total_seconds() if job.start_time else 0.0)
    try:
        plan = plan_from_json(job.plan, lambda name: _plan_blob(job.plan_folder + name))
        fetch_started = time.monotonic()
        run.plan = replace(plan, models=plan.models.localised(_local_file))
        run.fetch_seconds = time.monotonic() - fetch_started
    except DatabaseError:
        raise
    except Exception as exc:
        run.failure = exc
    return run


def _plan_blob(key: str) -> bytes:
    storage = get_storage()
    if storage.size(key) is None:
        raise EngineError(
            "a part of the job's plan (a picture or a long text) is missing from the store; create and start the job again"
        )
    with storage.open(key) as stream:
        return stream.read()


def _local_file(model: ModelFile) -> Path:
    """A planned model file in this worker's cache: the very file the plan picked (by its sha256)."""
    row = CheckpointFile.objects.filter(name=model.name).first()
    if row is None or row.sha256 != model.sha256:
        raise EngineError(f"the model {model.name} was deleted or replaced before the job ran; start the job again")
    return _cached(row)


def _settle(
    run: _Run,
    worker_id: Any,
    outcome: Any,
    engine_seconds: float,
    batch_id: uuid.UUID,
    *,
    retry_message: bool,
    message_spent: bool = False,
) -> None:
    """Finish one job from its engine outcome: succeed with its outputs, or fail, cancel or release it.
    `retry_message`: the job whose message is running here; its transient failure retries that message, while
    a job batched with it is released to its own message or the sweep. `message_spent`: settled by the finisher
    after its message was done with: a transient failure sends it again."""
    job_id, job = str(run.job.pk), run.job
    try:
        if isinstance(outcome, Exception):
            raise outcome
        upload_started = time.monotonic()
        names = _write_outputs(job, outcome)
        timings = {
            "queued_seconds": round(run.queued, 4),
            "fetch_seconds": round(run.fetch_seconds, 4),
            **{key: round(value, 4) for key, value in outcome.timings.items()},
            "engine_seconds": round(engine_seconds, 4),
            "upload_seconds": round(time.monotonic() - upload_started, 4),
            "run_seconds": round(time.monotonic() - run.started, 4),
        }
    except Cancelled:
        if shutdown.interrupted.is_set() and transitions.put_back(job_id, worker_id):
            logger.info("Job %s stopped by a shutdown; it is back in the queue", job_id)
            if retry_message:  # its message is retried (another worker, or this one's next start, runs it)
                raise TransientJobError("stopped by a shutdown; queued again") from None
            return
        transitions.cancelled_at_a_step(job_id)
        return
    except EngineError as exc:
        _fail(job_id, worker_id, str(exc))
        return
    except (TransientJobError, StorageError, OSError) as exc:
        if job.attempts >= transitions.MAX_ATTEMPTS:  # e.g. a store that stays full: say so, rather than loop
            _fail(job_id, worker_id, f"{exc} (after {job.attempts} attempts)")
            return
        transitions.release(job_id, worker_id)
        if retry_message:
            raise TransientJobError(f"{type(exc).__name__}: {exc}") from exc
        if message_spent:
            _send_again(job_id)
        logger.warning("Job %s released after %s: %s", job_id, type(exc).__name__, exc)
        return
    except DatabaseError:
        raise
    except Exception as exc:
        logger.exception("Job %s failed", job_id)
        _fail(job_id, worker_id, f"internal error: {type(exc).__name__}: {exc}")
        return
    batch = (batch_id, int(outcome.timings["batch_images"])) if "batch_images" in outcome.timings else None
    if not transitions.succeed(job_id, worker_id, names=names, timings=timings, ignored=outcome.ignored, batch=batch):
        if not InferenceJob.objects.filter(pk=job_id).exists():  # deleted meanwhile: the outputs go with it
            get_storage().delete_prefix(job.result_folder)
        return
    logger.info("Job %s succeeded (%d image(s), %.2f s)", job_id, len(names), timings["run_seconds"])


def _send_again(job_id: str) -> None:
    """A released job whose message was done with gets a new one (a retried message would have run it again)."""
    job = InferenceJob.objects.select_related("endpoint").filter(pk=job_id, state=JobState.QUEUED).first()
    if job is not None and job.endpoint is not None:
        transitions.requeue(job, messages.job_message(job_id, job.endpoint.queue_name), let_go=False)


def _fail(job_id: str, worker_id: Any, reason: str) -> None:
    transitions.fail(job_id, reason, jobs=transitions.held_by(job_id, worker_id))
