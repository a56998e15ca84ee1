"""esd.leases: the claim / lease / heartbeat / sweep rules inference jobs and checkpoint downloads share (issue 27.3).
Shown on download rows (checkpoints.services.DOWNLOADS); the job side runs through the job state machine tests."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone

from checkpoints import services as checkpoint_services
from checkpoints.models import Checkpoint, CheckpointStatus
from esd.leases import Heartbeat, Lease, PendingMessages
from esd.queues import message_for
from inferences import transitions
from tests.conftest import redis_broker

DOWNLOADS = checkpoint_services.DOWNLOADS


def downloading(user, **fields) -> Checkpoint:
    return Checkpoint.objects.create(type="Lora", status=CheckpointStatus.DOWNLOADING, created_by=user, **fields)


def test_jobs_and_downloads_are_held_by_the_one_lease_helper():
    assert isinstance(transitions.JOBS, Lease) and isinstance(DOWNLOADS, Lease)


def test_a_claim_holds_the_row_until_its_lease_runs_out(admin_user):
    row = downloading(admin_user)
    lease_end = checkpoint_services.download_lease_end
    assert DOWNLOADS.claim(row.pk, download_lease_until=lease_end()) is True
    assert DOWNLOADS.claim(row.pk, download_lease_until=lease_end()) is False  # held by a live run
    Checkpoint.objects.filter(pk=row.pk).update(download_lease_until=timezone.now() - timedelta(seconds=1))
    assert DOWNLOADS.claim(row.pk, where=~DOWNLOADS.waiting) is False  # `where` narrows: nothing matches
    assert DOWNLOADS.claim(row.pk, download_lease_until=lease_end()) is True  # its run died: taken over
    Checkpoint.objects.filter(pk=row.pk).update(status=CheckpointStatus.ACTIVE, download_lease_until=None)
    assert DOWNLOADS.claim(row.pk, download_lease_until=lease_end()) is False  # finished: waits for nothing


def test_lost_rows_are_the_waiting_ones_without_a_live_holder(admin_user):
    held = downloading(admin_user, download_lease_until=checkpoint_services.download_lease_end())
    free = downloading(admin_user)
    Checkpoint.objects.create(type="Lora", status=CheckpointStatus.ACTIVE, created_by=admin_user)
    lost = DOWNLOADS.lost(Checkpoint.objects.all(), older_than=0.0)
    assert list(lost.values_list("pk", flat=True)) == [free.pk]
    assert not DOWNLOADS.lost(Checkpoint.objects.all(), older_than=3600.0).exists()  # touched just now
    assert held.pk not in set(lost.values_list("pk", flat=True))


def test_of_two_sweeps_that_read_the_same_row_one_sends(admin_user, use_broker):
    broker = use_broker(redis_broker())
    broker.client.flushdb()
    row = downloading(admin_user)
    first, second = Checkpoint.objects.get(pk=row.pk), Checkpoint.objects.get(pk=row.pk)
    message = message_for(checkpoint_services.DOWNLOAD_ACTOR, str(row.pk))
    assert DOWNLOADS.resend(first, message) is True
    assert DOWNLOADS.resend(second, message) is False  # the row moved on since this sweep read it
    queue = message.queue_name
    assert PendingMessages().first_args(queue) == {str(row.pk)}
    assert PendingMessages().ids(queue) == {message.message_id}


def test_a_message_the_broker_refuses_leaves_the_row_for_the_next_sweep(admin_user, use_broker):
    use_broker(redis_broker("redis://127.0.0.1:1/0"))  # nothing listens there: a broker that is down
    row = downloading(admin_user)
    told: list[str] = []
    message = message_for(checkpoint_services.DOWNLOAD_ACTOR, str(row.pk))
    assert DOWNLOADS.resend(row, message, unsent=lambda: told.append("unsent")) is False
    assert told == ["unsent"]
    assert Checkpoint.objects.get(pk=row.pk).status == CheckpointStatus.DOWNLOADING


def test_a_heartbeat_beats_until_stopped_and_outlives_a_failing_beat():
    beats: list[float] = []
    failed = threading.Event()

    def beat() -> None:
        beats.append(time.monotonic())
        if len(beats) == 2:
            failed.set()
            raise DatabaseError("the database is restarting")

    heartbeat = Heartbeat(beat, interval=0.01, name="test-heartbeat").start()
    deadline = time.monotonic() + 10
    while len(beats) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    heartbeat.stop()
    assert failed.is_set() and len(beats) >= 5  # the failed second beat did not end it
    count = len(beats)
    time.sleep(0.05)
    assert len(beats) == count  # stopped: no beat after stop() returned


def test_a_heartbeat_ends_when_its_beat_says_so():
    beats: list[int] = []

    def beat() -> bool:
        beats.append(1)
        return len(beats) < 3

    heartbeat = Heartbeat(beat, interval=0.01, name="test-heartbeat").start()
    deadline = time.monotonic() + 10
    while heartbeat.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not heartbeat.is_alive() and len(beats) == 3


@pytest.fixture(autouse=True)
def _db(db):
    """Every test here reads or writes rows."""
