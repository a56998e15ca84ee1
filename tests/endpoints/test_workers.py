"""Workers in-process: register, heartbeat, pickup, drain, death by missed heartbeats, the status that follows,
the /metrics page, and esd_serve's supervisor."""

import time
from datetime import timedelta

import dramatiq
import pytest
from django.utils import timezone

from endpoints import services
from endpoints.models import Endpoint, EndpointStatus, Worker
from endpoints.runtime import EndpointWorker
from esd.queues import queue_depth, send
from tests.conftest import wait_for

ran: list[str] = []


@dramatiq.actor(queue_name="esd-test-default", max_retries=0)
def record(value: str) -> None:
    ran.append(value)
    time.sleep(0.2)


@pytest.fixture
def fast_heartbeats(settings):
    settings.ESD_WORKER_HEARTBEAT_SECONDS = 0.1
    # Generous: on a loaded 2-core machine a heartbeat thread can stall for a second.
    settings.ESD_WORKER_DEAD_AFTER_SECONDS = 5.0
    return settings


@pytest.fixture
def endpoint(transactional_db, admin_user):
    return services.endpoint_create(
        actor=admin_user, suffix="w", endpoint_type="Async", instance_type="cpu", count=2, autoscaling=False,
        roles=["IT Operator"],
    )  # fmt: skip


@pytest.fixture
def start_worker(fast_heartbeats):
    started = []

    def start(endpoint):
        worker = EndpointWorker(Endpoint.objects.get(pk=endpoint.pk), device="cpu")
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def status_of(endpoint):
    return services.endpoint_refresh(Endpoint.objects.get(pk=endpoint.pk))


def test_workers_bring_an_endpoint_in_service_and_count(endpoint, start_worker):
    assert status_of(endpoint).status == EndpointStatus.CREATING
    first = start_worker(endpoint)
    assert (status_of(endpoint).status, status_of(endpoint).live_count) == ("InService", 1)
    start_worker(endpoint)
    assert status_of(endpoint).live_count == 2
    assert status_of(endpoint).end_time is not None
    first.stop()
    assert status_of(endpoint).live_count == 1


def test_a_worker_runs_messages_of_its_queue_one_at_a_time(endpoint, start_worker):
    ran.clear()
    worker = start_worker(endpoint)
    for index in range(3):
        send(record.actor_name, f"job-{index}", queue_name=endpoint.queue_name)
    wait_for(lambda: len(ran) == 3, timeout=10)
    assert sorted(ran) == ["job-0", "job-1", "job-2"]
    assert worker._dramatiq.queue_prefetch == 1
    assert queue_depth(endpoint.queue_name) == 0


def test_the_heartbeat_reports_the_current_job(endpoint, start_worker):
    start_worker(endpoint)
    send(record.actor_name, "slow", queue_name=endpoint.queue_name)
    wait_for(lambda: Worker.objects.filter(current_job__contains="record(slow)").exists(), timeout=10)


def test_a_worker_names_the_jobs_it_is_running(endpoint, start_worker):
    worker = start_worker(endpoint)
    assert worker.running_jobs() == []
    send(record.actor_name, "slow", queue_name=endpoint.queue_name)
    assert wait_for(lambda: worker.running_jobs() == ["record(slow)"], timeout=10, interval=0.01)


def test_a_clean_stop_leaves_the_endpoint_stopped_not_failed(endpoint, start_worker):
    worker = start_worker(endpoint)
    assert status_of(endpoint).status == "InService"
    worker.stop()
    refreshed = Endpoint.objects.get(pk=endpoint.pk)  # written by the worker's deregistration, not by this read
    assert (refreshed.status, refreshed.error) == (EndpointStatus.STOPPED, "")
    assert start_worker(endpoint) and status_of(endpoint).status == "InService"


def test_missed_heartbeats_make_a_worker_dead_and_the_endpoint_failed(endpoint, fast_heartbeats):
    worker = services.worker_register(endpoint=endpoint, hostname="gpu-1", pid=4242, device="cuda:0")
    assert status_of(endpoint).status == "InService"
    Worker.objects.filter(pk=worker.pk).update(last_heartbeat=timezone.now() - timedelta(seconds=30))
    refreshed = status_of(endpoint)
    assert (refreshed.status, refreshed.live_count) == ("Failed", 0)
    assert "no live worker: the last heartbeat was at" in refreshed.error
    services.worker_heartbeat(worker=worker)  # it comes back
    assert status_of(endpoint).status == "InService"


def test_reads_compute_the_status_without_writing_it(endpoint, fast_heartbeats, admin_user):
    """A dead worker shows as Failed to every read at once, but only heartbeats, registrations and exits store a
    status: a GET never issues an UPDATE."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from endpoints import selectors

    worker = services.worker_register(endpoint=endpoint, hostname="gpu-1", pid=4242, device="cuda:0")
    Worker.objects.filter(pk=worker.pk).update(last_heartbeat=timezone.now() - timedelta(seconds=30))
    with CaptureQueriesContext(connection) as queries:
        [listed] = selectors.endpoint_list(viewer=admin_user, subject=admin_user, endpoint_id=str(endpoint.pk))
    assert (listed.status, listed.live_count) == ("Failed", 0)
    assert not [query["sql"] for query in queries if not query["sql"].lstrip().upper().startswith("SELECT")]
    assert Endpoint.objects.get(pk=endpoint.pk).status == "InService"  # as the last heartbeat left it
    services.worker_heartbeat(worker=worker)
    assert Endpoint.objects.get(pk=endpoint.pk).status == "InService"


def test_an_autoscaled_async_endpoint_scales_to_zero_in_service(transactional_db, admin_user, start_worker):
    endpoint = services.endpoint_create(
        actor=admin_user, suffix="auto", endpoint_type="Async", instance_type="cpu", count=3, autoscaling=True,
        roles=["IT Operator"],
    )  # fmt: skip
    start_worker(endpoint).stop()
    refreshed = status_of(endpoint)
    assert (refreshed.status, refreshed.live_count) == ("InService", 0)  # ESD's "cool down" state


def test_deleting_an_endpoint_drains_its_workers(endpoint, start_worker, admin_user):
    worker = start_worker(endpoint)
    services.endpoint_delete_many(actor=admin_user, endpoints=[Endpoint.objects.get(pk=endpoint.pk)])
    assert worker.stopped.wait(5), "the worker did not drain"
    assert not Endpoint.objects.filter(pk=endpoint.pk).exists()


def test_metrics_page(client, endpoint, start_worker, settings):
    start_worker(endpoint)
    send(record.actor_name, "x", queue_name="endpoint.esd-async-absent")  # another queue: not counted here
    page = client.get("/metrics").content.decode()
    labels = 'endpoint="esd-async-w",endpoint_type="Async",instance_type="cpu"'
    assert f"esd_endpoint_live_workers{{{labels}}} 1.0" in page
    assert f"esd_endpoint_in_service{{{labels}}} 1.0" in page
    assert f"esd_endpoint_desired_instances{{{labels}}} 2.0" in page  # fixed size: its count
    settings.ESD_METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).status_code == 200


def test_desired_instances_follow_the_backlog(transactional_db, admin_user, settings):
    from endpoints.autoscaling import scaling

    endpoint = services.endpoint_create(
        actor=admin_user, suffix="scale", endpoint_type="Async", instance_type="cpu", count=4, autoscaling=True,
        roles=["IT Operator"],
    )  # fmt: skip
    assert scaling(endpoint, 0, 0).desired == 0
    for index in range(12):
        send(record.actor_name, f"queued-{index}", queue_name=endpoint.queue_name)
    # RabbitMQ's message count trails the last publish by a moment.
    figures = wait_for(lambda: (found := scaling(endpoint, 0, 0)).queue_depth == 12 and found, timeout=10)
    assert (figures.queue_depth, figures.backlog, figures.desired) == (12, 12, 3)  # ceil(12 / 5)
    for index in range(30):
        send(record.actor_name, f"more-{index}", queue_name=endpoint.queue_name)
    assert wait_for(lambda: scaling(endpoint, 0, 0).queue_depth == 42, timeout=10)
    assert scaling(endpoint, 0, 0).desired == 4  # capped at the maximum
    dramatiq.get_broker().flush(endpoint.queue_name)
    assert scaling(endpoint, 0, 1).desired == 1  # one job in hand keeps one instance


def test_a_probe_is_answered_by_a_worker(endpoint, start_worker):
    start_worker(endpoint)
    probe_id = services.endpoint_probe_send(endpoint=endpoint)
    answered = wait_for(lambda: Endpoint.objects.filter(pk=endpoint.pk, last_probe_id=probe_id).first(), timeout=10)
    assert answered.last_probe_at is not None and ":" in answered.last_probe_worker
