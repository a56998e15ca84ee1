"""Every change of an inference job's state, in one place: start, claim, release, requeue, cancel, fail, succeed.

    created ──start──▶ inProgress (queued) ──claim──▶ inProgress (held by a worker) ──succeed──▶ succeed
       │                  ▲    │                        │    │
       │                  │    └──cancel──▶ failed      │    └──fail / cancelled at a step──▶ failed (cancelled)
       └──cancel/fail──▶ failed   └────release / requeue─┘

A cancel ends at once a job no live worker holds (created, queued, or held by a worker that died); a running one
is asked to stop at its next step, and if its worker dies first, the next sweep ends it (`cancel_orphans`).

Each change is one conditional UPDATE on the state it leaves, so a redelivered message, a second worker or a
concurrent request finds nothing to do; a worker's changes are further bound to its own hold (`held_by`), so a
job taken over after its worker was presumed dead is not finished twice. Waiters (`completion`) and webhooks hear
of every ending here. The services decide whether a change may happen (who asks, what the payload says); the
worker's execution runs the engine and storage; both call these.
"""

from typing import Any

from django.db.models import F, Q, QuerySet
from django.utils import timezone
from dramatiq import Message

from endpoints.models import Endpoint, Worker

from . import completion, webhooks
from .models import InferenceJob, JobStatus

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
) -> bool:
    """created → inProgress, bound to `endpoint`, with its plan and the message that will run it. False: it had
    started."""
    now = timezone.now()
    return bool(
        InferenceJob.objects.filter(pk=job.pk, status=JobStatus.CREATED).update(
            status=JobStatus.IN_PROGRESS,
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
            updated_at=now,
        )
    )


def refuse(job: InferenceJob, reason: str) -> None:
    """A start that cannot go ahead: the job stays `created`, with the reason kept on it."""
    InferenceJob.objects.filter(pk=job.pk, status=JobStatus.CREATED).update(error=reason, updated_at=timezone.now())


def unsent(job_id: str, message: Message) -> None:
    """The broker refused the job's message: forget its id, so the sweep (requeue) sends it again."""
    InferenceJob.objects.filter(pk=job_id, message_id=message.message_id).update(message_id="")


def claim(job_id: str, worker: Worker | None, holders: Q) -> InferenceJob | None:
    """Queued (or orphaned, or held by `holders`) → held by `worker`, one attempt more. None: nothing to do."""
    now = timezone.now()
    taken = InferenceJob.objects.filter(
        holders, pk=job_id, status=JobStatus.IN_PROGRESS, cancel_requested=False
    ).update(claimed_at=now, worker=worker, updated_at=now)
    if not taken:
        return None
    job = InferenceJob.objects.get(pk=job_id)
    InferenceJob.objects.filter(pk=job_id).update(attempts=job.attempts + 1)
    job.attempts += 1
    return job


def held_by(job_id: str, worker_id: Any) -> QuerySet[InferenceJob]:
    """The job while this worker still holds it (not cancelled-while-queued, reclaimed or deleted)."""
    jobs = InferenceJob.objects.filter(pk=job_id, status=JobStatus.IN_PROGRESS)
    return jobs.filter(worker__isnull=True) if worker_id is None else jobs.filter(worker=worker_id)


def put_back(job_id: str, worker_id: Any) -> bool:
    """Held by this worker, stopped by a shutdown (esd.shutdown) → queued again. The interrupted run is not counted
    against MAX_ATTEMPTS: the job did nothing wrong. A job asked to stop meanwhile is not put back."""
    return bool(
        held_by(job_id, worker_id)
        .filter(cancel_requested=False)
        .update(claimed_at=None, worker=None, attempts=F("attempts") - 1, progress_step=0, updated_at=timezone.now())
    )


def release(job_id: str, worker_id: Any) -> None:
    """Held → queued again (a transient failure: the message is retried)."""
    held_by(job_id, worker_id).update(claimed_at=None, worker=None)


def requeue(job: InferenceJob, message: Message, *, let_go: bool) -> bool:
    """A waiting job whose message was lost gets a new one (and, `let_go`, this idle worker's hold is dropped);
    conditional on the row being as the sweep read it, so several sweeping workers send one message."""
    changes: dict[str, Any] = {"message_id": message.message_id, "updated_at": timezone.now()}
    if let_go:
        changes |= {"worker": None, "claimed_at": None}
    return bool(
        InferenceJob.objects.filter(pk=job.pk, status=JobStatus.IN_PROGRESS, updated_at=job.updated_at).update(
            **changes
        )
    )


def cancel(job: InferenceJob, reason: str) -> bool:
    """Created, queued or held by a dead worker → failed (cancelled) at once: True. Running on a live worker: asked
    to stop at its next step: False."""
    now = timezone.now()
    unclaimed = Q(status=JobStatus.CREATED) | (Q(status=JobStatus.IN_PROGRESS) & unclaimed_or_orphaned())
    if InferenceJob.objects.filter(unclaimed, pk=job.pk).update(
        status=JobStatus.FAILED, cancelled=True, cancel_requested=True, error=reason, complete_time=now, updated_at=now
    ):
        _ended(str(job.pk), "failed")
        return True
    InferenceJob.objects.filter(pk=job.pk, status=JobStatus.IN_PROGRESS).update(
        cancel_requested=True, error=reason, updated_at=now
    )
    return False


def cancel_orphans(jobs: QuerySet[InferenceJob]) -> int:
    """Jobs of `jobs` asked to stop whose worker died before it saw the flag → failed (cancelled). No claim takes a
    job asked to stop, so without this the sweep would leave them in progress for ever."""
    now = timezone.now()
    orphaned = Q(status=JobStatus.IN_PROGRESS, cancel_requested=True) & unclaimed_or_orphaned()
    settled = 0
    for job_id in [str(pk) for pk in jobs.filter(orphaned).values_list("pk", flat=True)]:
        # one conditional UPDATE each, so that each ending is heard of once (waiters, webhooks)
        ended = InferenceJob.objects.filter(orphaned, pk=job_id).update(
            status=JobStatus.FAILED, cancelled=True, complete_time=now, updated_at=now
        )
        if ended:
            _ended(job_id, "failed")
            settled += 1
    return settled


def cancelled_at_a_step(job_id: str) -> None:
    """A running job whose worker saw its cancel flag → failed (cancelled). Heard of once: a job a cancel or a sweep
    ended meanwhile is not announced again (found by tests/inferences/test_job_state_machine.py)."""
    now = timezone.now()
    if InferenceJob.objects.filter(pk=job_id, status=JobStatus.IN_PROGRESS).update(
        status=JobStatus.FAILED, cancelled=True, complete_time=now, updated_at=now
    ):
        _ended(job_id, "failed")


def fail(job_id: str, reason: str, jobs: QuerySet[InferenceJob] | None = None) -> bool:
    """Any unfinished state (or only while in `jobs`: a worker's hold) → failed with the reason, once."""
    now = timezone.now()
    if jobs is None:
        jobs = InferenceJob.objects.filter(pk=job_id, status__in=[JobStatus.CREATED, JobStatus.IN_PROGRESS])
    if not jobs.update(status=JobStatus.FAILED, error=reason[:10000], complete_time=now, updated_at=now):
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
        status=JobStatus.SUCCEED,
        image_names=names,
        timings=timings,
        ignored_parameters=ignored,
        progress_step=1,
        progress_total=1,
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
