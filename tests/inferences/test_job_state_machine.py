"""Issue 29.2: the job state machine under random interleavings, on the real models and database.

Hypothesis drives create, start, claim (a message delivered to a worker), step, cancel, delete, worker killed,
time passing (a dead worker's heartbeat grows old), worker restarted, sweep and message redelivery, and checks after
every rule that no job ends twice and nothing finished changes again, and after every sweep that each job in
progress has a holder that is really alive (or one the database cannot yet know is dead), or a message waiting for
it, and that a job asked to stop is ended or held by a worker that will see the flag at its next step.

The broker is modelled, the transitions and sweeps are the project's own: `messages.send` puts a message on the
model's queue and `pending_messages` reads it, as Redis can be asked (`redis`), or answers None, as the in-process
broker of `make run` cannot (`memory`: killing the process loses its queue and every message in flight).
"""

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.utils import timezone
from dramatiq import Message
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from endpoints.models import Endpoint, EndpointStatus, Worker
from esd import leases
from inferences import execution, messages, services, transitions
from inferences.models import HELD, InferenceJob, JobState, JobStatus
from tests.helpers import state_machine_settings

FINISHED = (JobStatus.SUCCEED, JobStatus.FAILED)


@dataclass
class ModelWorker:
    row: Worker
    alive: bool = True
    aged: bool = False  # dead, and its heartbeat old enough for the database to know
    holds: dict[str, Message] = field(default_factory=dict)  # job id -> the unacknowledged message running it


class JobStateMachine(RuleBasedStateMachine):
    broker_kind = "redis"
    owner = None

    def __init__(self) -> None:
        super().__init__()
        InferenceJob.objects.all().delete()
        Worker.objects.all().delete()
        Endpoint.objects.all().delete()
        self.endpoint = Endpoint.objects.create(
            name="esd-async-sm", endpoint_type="Async", instance_type="cpu", status=EndpointStatus.IN_SERVICE
        )
        self.queue: list[Message] = []  # waiting messages (the model's broker)
        self.sent: list[Message] = []  # every message ever sent, for redelivery
        self.workers: list[ModelWorker] = []
        self.jobs: list[str] = []
        self.endings: dict[str, list[str]] = {}
        self.finished: dict[str, str] = {}
        self.after_sweep = False
        self._add_worker()

    # --- the model's broker ---------------------------------------------------------------------------------------

    def send(self, job_id: str, message: Message) -> bool:
        self.queue.append(message)
        self.sent.append(message)
        return True

    def pending(self, queue_name: str) -> list[Message] | None:
        if self.broker_kind == "memory":
            return None  # the in-process broker cannot be asked
        return [*self.queue, *(message for worker in self.workers for message in worker.holds.values())]

    def ended(self, job_id: str, event: str) -> None:
        self.endings.setdefault(job_id, []).append(event)

    # --- helpers ----------------------------------------------------------------------------------------------------

    def _add_worker(self) -> ModelWorker:
        row = Worker.objects.create(
            endpoint=self.endpoint,
            hostname="sm",
            pid=len(self.workers) + 1,
            device="cpu",
            last_heartbeat=timezone.now(),
        )
        worker = ModelWorker(row)
        self.workers.append(worker)
        return worker

    def alive(self) -> list[ModelWorker]:
        return [worker for worker in self.workers if worker.alive]

    def beat(self) -> None:
        # the live workers' heartbeat threads, between any two rules
        Worker.objects.filter(pk__in=[worker.row.pk for worker in self.alive()]).update(last_heartbeat=timezone.now())

    def _kill(self, worker: ModelWorker) -> None:
        worker.alive = False
        if self.broker_kind == "redis":  # an unacknowledged message goes back to its queue
            self.queue.extend(worker.holds.values())
        worker.holds.clear()

    # --- rules ------------------------------------------------------------------------------------------------------

    @rule()
    def create(self) -> None:
        job = InferenceJob.objects.create(task_type="txt2img", inference_type="Async", created_by=self.owner)
        self.jobs.append(str(job.pk))
        self.after_sweep = False

    @precondition(lambda self: self.jobs)
    @rule(pick=st.integers(min_value=0))
    def start(self, pick: int) -> None:
        job = InferenceJob.objects.filter(pk=self.jobs[pick % len(self.jobs)]).first()
        if job is not None:
            message = messages.job_message(str(job.pk), self.endpoint.queue_name)
            if transitions.start(job, self.endpoint, message, prompt="", ignored=[], plan={}):
                self.send(str(job.pk), message)
        self.after_sweep = False

    @precondition(lambda self: self.queue and self.alive())
    @rule(pick=st.integers(min_value=0), which=st.integers(min_value=0))
    def deliver(self, pick: int, which: int) -> None:
        """A worker takes a message and claims its job (or drops it: nothing to do)."""
        message = self.queue.pop(pick % len(self.queue))
        worker = self.alive()[which % len(self.alive())]
        job_id = message.args[0]
        if job_id in worker.holds:  # a second message for a job this worker runs: dropped (inference_execute)
            return
        if execution.claim(job_id, worker.row) is not None:
            worker.holds[job_id] = message
        self.after_sweep = False

    @precondition(lambda self: any(worker.holds for worker in self.alive()))
    @rule(which=st.integers(min_value=0), succeeds=st.booleans())
    def step(self, which: int, succeeds: bool) -> None:
        """A running job's next step: it sees its cancel flag and stops, or ends (succeeds or fails)."""
        worker = [worker for worker in self.alive() if worker.holds][which % len([w for w in self.alive() if w.holds])]
        job_id = next(iter(worker.holds))
        job = InferenceJob.objects.filter(pk=job_id).first()
        if job is None or job.state == JobState.CANCELLING:
            if job is not None:
                transitions.cancelled_at_a_step(job_id)
        elif succeeds:
            transitions.succeed(job_id, worker.row.pk, names=[], timings={}, ignored=[])
        else:
            transitions.fail(job_id, "the engine failed", transitions.held_by(job_id, worker.row.pk))
        del worker.holds[job_id]  # acknowledged
        self.after_sweep = False

    @precondition(lambda self: self.jobs)
    @rule(pick=st.integers(min_value=0))
    def cancel(self, pick: int) -> None:
        job = InferenceJob.objects.filter(pk=self.jobs[pick % len(self.jobs)]).first()
        if job is not None and not job.finished:
            transitions.cancel(job, "cancelled by the test")
        self.after_sweep = False

    @precondition(lambda self: self.jobs)
    @rule(pick=st.integers(min_value=0))
    def delete(self, pick: int) -> None:
        job_id = self.jobs.pop(pick % len(self.jobs))
        InferenceJob.objects.filter(pk=job_id, state__in=HELD).update(state=JobState.CANCELLING)
        InferenceJob.objects.filter(pk=job_id).delete()
        self.finished.pop(job_id, None)
        self.after_sweep = False

    @precondition(lambda self: self.alive())
    @rule(which=st.integers(min_value=0))
    def kill(self, which: int) -> None:
        """SIGKILL: a worker process dies mid-run (in-process broker: the whole server, queue and all)."""
        if self.broker_kind == "memory":
            for worker in self.alive():
                self._kill(worker)
            self.queue.clear()
        else:
            self._kill(self.alive()[which % len(self.alive())])
        self.after_sweep = False

    @precondition(lambda self: any(not worker.alive and not worker.aged for worker in self.workers))
    @rule()
    def time_passes(self) -> None:
        """The dead workers' heartbeats grow older than ESD_WORKER_DEAD_AFTER_SECONDS."""
        for worker in self.workers:
            if not worker.alive:
                worker.aged = True
        long_ago = timezone.now() - timedelta(days=1)
        Worker.objects.filter(pk__in=[worker.row.pk for worker in self.workers if worker.aged]).update(
            last_heartbeat=long_ago
        )
        self.after_sweep = False

    @rule()
    def restart(self) -> None:
        """A worker process starts (esd_serve: on the in-process broker, after the old process is gone) and queues
        again what the database says is waiting, as its start does."""
        if self.broker_kind == "memory":
            for worker in self.alive():
                self._kill(worker)
            self.queue.clear()
        self._add_worker()
        queues = None if self.broker_kind == "memory" else {self.endpoint.queue_name}
        services.inference_recover(queues=queues)
        self.after_sweep = False

    @precondition(lambda self: self.alive())
    @rule(which=st.integers(min_value=0))
    def sweep(self, which: int) -> None:
        """A live worker's periodic sweep (every ESD_REQUEUE_AFTER_SECONDS)."""
        self.beat()
        worker = self.alive()[which % len(self.alive())]
        services.inference_recover(queues={self.endpoint.queue_name}, worker=worker.row, periodic=True)
        self.after_sweep = True

    @precondition(lambda self: self.sent)
    @rule(pick=st.integers(min_value=0))
    def redeliver(self, pick: int) -> None:
        """A message delivered a second time (at-least-once delivery)."""
        self.queue.append(self.sent[pick % len(self.sent)])
        self.after_sweep = False

    # --- invariants -------------------------------------------------------------------------------------------------

    @invariant()
    def nothing_ends_twice_or_changes_after(self) -> None:
        self.beat()
        for job_id, events in self.endings.items():
            assert len(events) <= 1, f"job {job_id} ended {len(events)} times: {events}"
        for job_id, status in InferenceJob.objects.filter(status__in=FINISHED).values_list("pk", "status"):
            assert self.finished.setdefault(str(job_id), status) == status, f"job {job_id} changed after it ended"

    @invariant()
    def after_a_sweep_every_job_in_progress_will_end(self) -> None:
        if not self.after_sweep:
            return
        waiting = {message.args[0] for message in self.queue}
        holders = {str(worker.row.pk): worker for worker in self.workers}
        for job in InferenceJob.objects.filter(status=JobStatus.IN_PROGRESS):
            job_id = str(job.pk)
            holder = holders.get(str(job.worker_id)) if job.worker_id else None
            held = holder is not None and (job_id in holder.holds or (not holder.alive and not holder.aged))
            assert held or job_id in waiting, (
                f"job {job_id} is in progress with no live holder and no message (cancel asked: "
                f"{job.state == JobState.CANCELLING}, attempts {job.attempts}, broker {self.broker_kind})"
            )
            if job.state == JobState.CANCELLING:
                assert held, f"job {job_id} was asked to stop, and no worker will see it"


@pytest.mark.parametrize("broker_kind", ["redis", "memory"])
def test_the_job_state_machine_under_random_interleavings(db, admin_user, monkeypatch, settings, broker_kind):
    settings.ESD_REQUEUE_AFTER_SECONDS = 0  # a sweep looks at every job: as if that long had passed between rules
    machines: list[JobStateMachine] = []

    class Machine(JobStateMachine):
        def __init__(self) -> None:
            super().__init__()
            machines.append(self)

    Machine.broker_kind, Machine.owner = broker_kind, admin_user
    # the broker is the model's: at start (messages.send) and in the sweeps (esd.leases)
    monkeypatch.setattr(messages, "send", lambda job_id, message: machines[-1].send(job_id, message))
    monkeypatch.setattr(leases, "enqueue", lambda message: machines[-1].send(message.args[0], message))
    monkeypatch.setattr(leases, "pending_messages", lambda queue_name: machines[-1].pending(queue_name))
    real_ended = transitions._ended

    def ended(job_id: str, event: str) -> None:
        machines[-1].ended(job_id, event)
        real_ended(job_id, event)

    monkeypatch.setattr(transitions, "_ended", ended)
    # the jobs this process's worker threads run: those the model's live workers hold
    monkeypatch.setattr(
        execution, "running_here", lambda: [job for worker in machines[-1].alive() for job in worker.holds]
    )
    run_state_machine_as_test(Machine, settings=state_machine_settings())


def test_a_job_whose_server_was_killed_before_its_worker_looked_dead_is_queued_again(
    db, admin_user, monkeypatch, settings
):
    """The case behind `bench/faults.py --scenario serve` on the defaults (issue 29.2): esd_serve killed mid-job,
    started again while the dead worker's heartbeat still looked recent, so the start did not queue the job again;
    once the heartbeat had aged, the sweeps left it alone because the in-process broker cannot say whether a
    message waits for it."""
    settings.ESD_REQUEUE_AFTER_SECONDS = 0
    JobStateMachine.broker_kind, JobStateMachine.owner = "memory", admin_user
    machine = JobStateMachine()
    monkeypatch.setattr(messages, "send", machine.send)
    monkeypatch.setattr(leases, "enqueue", lambda message: machine.send(message.args[0], message))
    monkeypatch.setattr(leases, "pending_messages", machine.pending)
    monkeypatch.setattr(execution, "running_here", lambda: [job for w in machine.alive() for job in w.holds])
    machine.create()
    machine.start(0)
    machine.deliver(0, 0)
    machine.kill(0)
    machine.restart()
    machine.time_passes()
    machine.sweep(0)
    machine.after_a_sweep_every_job_in_progress_will_end()
    machine.deliver(0, 0)
    machine.step(0, True)
    assert InferenceJob.objects.get().status == JobStatus.SUCCEED
