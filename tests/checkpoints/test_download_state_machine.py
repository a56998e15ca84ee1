"""Issue 29.2, for checkpoint downloads: their lease under random interleavings of a message delivered, a run
renewing its lease, finishing, dying, its lease running out, a sweep, a restart and a duplicate message, on the
real models and database (the broker modelled as in tests/inferences/test_job_state_machine.py).

After every rule: no two live runs hold one download, and a finished download never changes again. After every
sweep: each download still Downloading has a live run, a message waiting for it, or a dead run whose lease has not
run out yet (nothing can know it is dead before then).
"""

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from checkpoints import actors, execution, services
from checkpoints.models import Checkpoint, CheckpointFile, CheckpointStatus
from esd import leases
from tests.helpers import state_machine_settings


@dataclass
class Run:
    checkpoint_id: str
    alive: bool = True
    expired: bool = False  # dead, and its lease run out


class DownloadStateMachine(RuleBasedStateMachine):
    owner = None

    def __init__(self) -> None:
        super().__init__()
        Checkpoint.objects.all().delete()
        self.queue: list[str] = []
        self.runs: list[Run] = []
        self.checkpoints: list[str] = []
        self.finished: set[str] = set()
        self.after_sweep = False

    def send(self, checkpoint_id: str) -> None:
        self.queue.append(str(checkpoint_id))

    def pending(self, queue_name: str) -> list:
        return [type("Message", (), {"args": (checkpoint_id,)})() for checkpoint_id in self.queue]

    def alive(self) -> list[Run]:
        return [run for run in self.runs if run.alive]

    @rule()
    def create(self) -> None:
        checkpoint = Checkpoint.objects.create(
            type="Lora", status=CheckpointStatus.DOWNLOADING, created_by=self.owner, source_url="https://x/m"
        )
        CheckpointFile.objects.create(checkpoint=checkpoint, name=f"m-{checkpoint.pk}.safetensors")
        self.checkpoints.append(str(checkpoint.pk))
        self.send(str(checkpoint.pk))
        self.after_sweep = False

    @precondition(lambda self: self.queue)
    @rule(pick=st.integers(min_value=0))
    def deliver(self, pick: int) -> None:
        """A download worker takes a message: it runs the download if it gets the lease; a lease held elsewhere
        (DownloadBusy) sends the message back for a later retry, as the actor does."""
        checkpoint_id = self.queue.pop(pick % len(self.queue))
        if not Checkpoint.objects.filter(pk=checkpoint_id, status=CheckpointStatus.DOWNLOADING).exists():
            return  # finished or deleted: nothing to do
        if execution.take_download(checkpoint_id):
            self.runs.append(Run(checkpoint_id))
        else:
            self.send(checkpoint_id)
        self.after_sweep = False

    @precondition(lambda self: self.alive())
    @rule(which=st.integers(min_value=0))
    def renew(self, which: int) -> None:
        """A live run's progress thread writes its lease again."""
        run = self.alive()[which % len(self.alive())]
        Checkpoint.objects.filter(pk=run.checkpoint_id, status=CheckpointStatus.DOWNLOADING).update(
            download_lease_until=services.download_lease_end()
        )

    @precondition(lambda self: self.alive())
    @rule(which=st.integers(min_value=0))
    def finish(self, which: int) -> None:
        run = self.alive()[which % len(self.alive())]
        Checkpoint.objects.filter(pk=run.checkpoint_id, status=CheckpointStatus.DOWNLOADING).update(
            status=CheckpointStatus.ACTIVE, download_lease_until=None
        )
        run.alive = False
        run.expired = True
        self.after_sweep = False

    @precondition(lambda self: self.alive())
    @rule(which=st.integers(min_value=0))
    def die(self, which: int) -> None:
        """The run's process is killed: Redis hands its unacknowledged message back."""
        run = self.alive()[which % len(self.alive())]
        run.alive = False
        self.send(run.checkpoint_id)
        self.after_sweep = False

    @precondition(lambda self: any(not run.alive and not run.expired for run in self.runs))
    @rule()
    def time_passes(self) -> None:
        """Longer than a lease: the dead runs' leases run out."""
        dead = [run for run in self.runs if not run.alive and not run.expired]
        for run in dead:
            run.expired = True
        Checkpoint.objects.filter(
            pk__in=[run.checkpoint_id for run in dead], download_lease_until__isnull=False
        ).exclude(pk__in=[run.checkpoint_id for run in self.alive()]).update(
            download_lease_until=timezone.now() - timedelta(seconds=1)
        )
        self.after_sweep = False

    @precondition(lambda self: self.queue)
    @rule()
    def lose_the_queue(self) -> None:
        """Redis restarts without persistence: every waiting message is gone."""
        self.queue.clear()
        self.after_sweep = False

    @rule()
    def sweep(self) -> None:
        services.checkpoint_resume_downloads(periodic=True)
        self.after_sweep = True

    @rule()
    def restart(self) -> None:
        services.checkpoint_resume_downloads(queues=None)
        self.after_sweep = False

    @precondition(lambda self: self.checkpoints)
    @rule(pick=st.integers(min_value=0))
    def duplicate(self, pick: int) -> None:
        self.send(self.checkpoints[pick % len(self.checkpoints)])
        self.after_sweep = False

    @invariant()
    def one_live_run_per_download_and_nothing_finished_changes(self) -> None:
        holders = [run.checkpoint_id for run in self.alive()]
        assert len(holders) == len(set(holders)), f"two live runs hold one download: {holders}"
        active = set(Checkpoint.objects.filter(status=CheckpointStatus.ACTIVE).values_list("pk", flat=True))
        active = {str(pk) for pk in active}
        assert self.finished <= active, "a finished download changed again"
        self.finished |= active

    @invariant()
    def after_a_sweep_every_download_will_go_on(self) -> None:
        if not self.after_sweep:
            return
        for checkpoint_id in Checkpoint.objects.filter(status=CheckpointStatus.DOWNLOADING).values_list(
            "pk", flat=True
        ):
            checkpoint_id = str(checkpoint_id)
            runs = [run for run in self.runs if run.checkpoint_id == checkpoint_id]
            going_on = any(run.alive or not run.expired for run in runs) or checkpoint_id in self.queue
            assert going_on, f"download {checkpoint_id} has no live run and no message"


def test_the_download_lease_under_random_interleavings(db, admin_user, monkeypatch, settings):
    settings.ESD_REQUEUE_AFTER_SECONDS = 0  # a sweep looks at every download, as if that long had passed
    machines: list[DownloadStateMachine] = []

    class Machine(DownloadStateMachine):
        def __init__(self) -> None:
            super().__init__()
            machines.append(self)

    Machine.owner = admin_user

    def send(actor_name: str, checkpoint_id: str, queue_name: str | None = None) -> None:
        assert actor_name == actors.checkpoint_download.actor_name
        machines[-1].send(checkpoint_id)

    monkeypatch.setattr(services, "send", send)  # services queue downloads by the actor's name (esd.queues)
    monkeypatch.setattr(leases, "enqueue", lambda message: machines[-1].send(message.args[0]))  # the sweeps' sends
    monkeypatch.setattr(leases, "pending_messages", lambda queue_name: machines[-1].pending(queue_name))
    run_state_machine_as_test(Machine, settings=state_machine_settings())
