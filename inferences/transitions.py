"""Every change of an inference job's state, in one place: start, claim, release, requeue, cancel, fail, succeed.

    created ──start──▶ queued ──claim──▶ running ──succeed──▶ succeeded
       │                 ▲ │               │ │ └──fail──▶ failed
       │                 │ └──cancel──▶    │ └──cancel──▶ cancelling ──stopped at a step / swept──▶ cancelled
       └──cancel/fail──▶ │   cancelled     │
                         └──release/requeue┘

ESD's wire status is generated from the state by the database (models.WIRE_STATUS): created; queued, running and
cancelling are `inprogress`; succeeded is `succeed`; failed and cancelled are `failed`.

A cancel ends at once a job no live worker holds (created, queued, or held by a worker that died); a running one
is asked to stop at its next step, and if its worker dies first, the next sweep ends it (`cancel_orphans`).

Each change is one conditional UPDATE on the state it leaves, so a redelivered message, a second worker or a
concurrent request finds nothing to do; a worker's changes are further bound to its own hold (`held_by`), so a
job taken over after its worker was presumed dead is not finished twice. Waiters (`completion`) and webhooks hear
of every ending here. The services decide whether a change may happen (who asks, what the payload says); the
worker's execution runs the engine and storage; both call these.
"""

from typing import Any

from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone
from dramatiq import Message

from endpoints.models import Endpoint, Worker
from esd.leases import Lease

from . import completion, webhooks
from .models import HELD, IN_PROGRESS, UNFINISHED, InferenceJob, JobState

MAX_ATTEMPTS = 3  # runs of one job whose worker died mid-run, before it fails saying so


def unclaimed_or_orphaned() -> Q:
    """Jobs no live worker holds: never claimed, or claimed by a worker that stopped or missed its heartbeats."""
    from endpoints.selectors import live_cutoff

    return (
        Q(claimed_at__isnull=True)
        | Q(worker__isnull=True)
        | Q(worker__stopped_at__isnull=False)
        | Q(worker__last_heartbeat__lt=live_cutoff())
    )


# A job waits for a run while queued, or running with no live holder; it is held by its worker's heartbeat
JOBS = Lease(model=InferenceJob, waiting=Q(state__in=[JobState.QUEUED, JobState.RUNNING]), free=unclaimed_or_orphaned)


def start(
    job: InferenceJob,
    endpoint: Endpoint,
    message: Message,
    *,
    prompt: str,
    ignored: list[str],
    plan: dict[str, Any],
    batch_key: str = "",
    image_count: int = 0,
    model_name: str = "",
    sampler_name: str = "",
) -> bool:
    """created → queued, bound to `endpoint`, with its plan and the message that will run it. False: it had
    started."""
    now = timezone.now()
    return bool(
        InferenceJob.objects.filter(pk=job.pk, state=JobState.CREATED).update(
            state=JobState.QUEUED,
            endpoint=endpoint,
            endpoint_name=endpoint.name,
            instance_type=endpoint.instance_type,
            start_time=now,
            prompt=prompt[:2000],
            ignored_parameters=ignored,
            error="",
            message_id=message.message_id,
            plan=plan,
            batch_key=batch_key,
            image_count=image_count,
            model_name=model_name,
            sampler_name=sampler_name,
            updated_at=now,
        )
    )


def refuse(job: InferenceJob, reason: str) -> None:
    """A start that cannot go ahead: the job stays `created`, with the reason kept on it."""
    InferenceJob.objects.filter(pk=job.pk, state=JobState.CREATED).update(error=reason, updated_at=timezone.now())


def unsent(job_id: str, message: Message) -> None:
    """The broker refused the job's message: forget its id, so the sweep (requeue) sends it again."""
    InferenceJob.objects.filter(pk=job_id, message_id=message.message_id).update(message_id="")


def claim(job_id: str, worker: Worker | None, *, queued_only: bool = False) -> InferenceJob | None:
    """Queued, or running with no live holder (its worker died) or held by `worker` already (a redelivered message)
    → running, held by `worker`, one attempt more; `queued_only`: only a queued job (a batch's companion). None:
    nothing to do (a job asked to stop is never taken)."""
    now = timezone.now()
    mine = Q(worker=worker) if worker is not None else None
    taken = JOBS.claim(
        job_id,
        also=None if queued_only else mine,
        where=Q(state=JobState.QUEUED) if queued_only else None,
        state=JobState.RUNNING,
        claimed_at=now,
        worker=worker,
        attempts=F("attempts") + 1,
        updated_at=now,
    )
    return InferenceJob.objects.filter(pk=job_id).first() if taken else None


def held_by(job_id: str, worker_id: Any) -> QuerySet[InferenceJob]:
    """The job while this worker still holds it (not cancelled-while-queued, reclaimed or deleted)."""
    jobs = InferenceJob.objects.filter(pk=job_id, state__in=HELD)
    return jobs.filter(worker__isnull=True) if worker_id is None else jobs.filter(worker=worker_id)


def put_back(job_id: str, worker_id: Any) -> bool:
    """Held by this worker, stopped by a shutdown (esd.shutdown) → queued again. The interrupted run is not counted
    against MAX_ATTEMPTS: the job did nothing wrong. A job asked to stop meanwhile is not put back."""
    return bool(
        held_by(job_id, worker_id)
        .filter(state=JobState.RUNNING)
        .update(
            state=JobState.QUEUED,
            claimed_at=None,
            worker=None,
            attempts=F("attempts") - 1,
            progress_step=0,
            updated_at=timezone.now(),
        )
    )


def release(job_id: str, worker_id: Any) -> None:
    """Running → queued again (a transient failure: the message is retried). A job asked to stop stays cancelling,
    held by no one, for the sweep to end (cancel_orphans)."""
    held_by(job_id, worker_id).update(
        state=Case(When(state=JobState.RUNNING, then=Value(JobState.QUEUED)), default=F("state")),
        claimed_at=None,
        worker=None,
    )


def requeue(job: InferenceJob, message: Message, *, let_go: bool) -> bool:
    """A waiting job whose message was lost gets a new one, sent (and, `let_go`, this idle worker's hold is
    dropped); conditional on the row being as the sweep read it, so several sweeping workers send one message."""
    changes: dict[str, Any] = {"message_id": message.message_id}
    if let_go:
        changes |= {"state": JobState.QUEUED, "worker": None, "claimed_at": None}
    return JOBS.resend(job, message, unsent=lambda: unsent(str(job.pk), message), **changes)


def cancel(job: InferenceJob, reason: str) -> bool:
    """Created, queued or held by a dead worker → cancelled at once: True. Running on a live worker → cancelling:
    its worker stops it at the next step: False."""
    now = timezone.now()
    unclaimed = Q(state=JobState.CREATED) | (Q(state__in=IN_PROGRESS) & unclaimed_or_orphaned())
    if InferenceJob.objects.filter(unclaimed, pk=job.pk).update(
        state=JobState.CANCELLED, error=reason, complete_time=now, updated_at=now
    ):
        _ended(str(job.pk), "failed")
        return True
    InferenceJob.objects.filter(pk=job.pk, state__in=HELD).update(
        state=JobState.CANCELLING, error=reason, updated_at=now
    )
    return False


def cancel_orphans(jobs: QuerySet[InferenceJob], held_idle: Q | None = None) -> int:
    """Cancelling jobs of `jobs` whose worker died before it saw the request (or that `held_idle`: held by the
    sweeping worker, which runs none of them) → cancelled. No claim takes a cancelling job, so without this the
    sweep would leave them in progress for ever."""
    now = timezone.now()
    orphaned = Q(state=JobState.CANCELLING) & (unclaimed_or_orphaned() | (held_idle or Q(pk__in=[])))
    settled = 0
    for job_id in [str(pk) for pk in jobs.filter(orphaned).values_list("pk", flat=True)]:
        # one conditional UPDATE each, so that each ending is heard of once (waiters, webhooks)
        ended = InferenceJob.objects.filter(orphaned, pk=job_id).update(
            state=JobState.CANCELLED, complete_time=now, updated_at=now
        )
        if ended:
            _ended(job_id, "failed")
            settled += 1
    return settled


def cancelled_at_a_step(job_id: str) -> None:
    """A job whose worker saw it asked to stop → cancelled. Heard of once: a job a cancel or a sweep ended meanwhile
    is not announced again (found by tests/inferences/test_job_state_machine.py)."""
    now = timezone.now()
    if InferenceJob.objects.filter(pk=job_id, state__in=IN_PROGRESS).update(
        state=JobState.CANCELLED, complete_time=now, updated_at=now
    ):
        _ended(job_id, "failed")


def fail(job_id: str, reason: str, jobs: QuerySet[InferenceJob] | None = None) -> bool:
    """Any unfinished state (or only while in `jobs`: a worker's hold) → failed with the reason, once."""
    now = timezone.now()
    if jobs is None:
        jobs = InferenceJob.objects.filter(pk=job_id, state__in=UNFINISHED)
    if not jobs.update(state=JobState.FAILED, error=reason[:10000], complete_time=now, updated_at=now):
        return False
    _ended(job_id, "failed")
    return True


def succeed(
    job_id: str,
    worker_id: Any,
    *,
    names: list[str],
    timings: dict[str, float],
    ignored: list[str],
    batch: tuple[Any, int] | None = None,
) -> bool:
    """Held by this worker → succeed, with its outputs' names (and the batch it ran in: id, images). False:
    deleted or cancelled meanwhile."""
    now = timezone.now()
    batch_id, batch_images = batch if batch is not None else (None, 0)
    finished = held_by(job_id, worker_id).update(
        batch_id=batch_id,
        batch_images=batch_images,
        state=JobState.SUCCEEDED,
        image_names=names,
        timings=timings,
        ignored_parameters=ignored,
        progress_step=1,
        progress_total=1,
        preview=None,
        complete_time=now,
        updated_at=now,
    )
    if finished:
        _ended(job_id, "succeed")
    return bool(finished)


def _ended(job_id: str, event: str) -> None:
    completion.notify(job_id)
    job = InferenceJob.objects.filter(pk=job_id).first()
    if job is not None:
        webhooks.webhook_queue(job, event)
