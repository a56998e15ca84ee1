"""Jobs survive a broker that loses its messages and a database that goes away: nothing is left waiting forever.

Redis is the real one on loopback (a database number of its own), as everywhere in the suite; "a Redis restart"
is what such a restart leaves behind without persistence: no keys at all.
"""

import contextlib

import dramatiq
import pytest
from django.db import connection
from django.test import Client
from dramatiq.brokers.stub import StubBroker

from endpoints.models import Worker
from esd.queues import enqueue, message_for, pending_messages
from inferences import services
from inferences.execution import claim
from inferences.models import InferenceJob
from tests.conftest import redis_broker

from .conftest import txt2img
from .jobs import another_live_worker, serve


def test_pending_messages_asks_redis_and_knows_when_it_cannot():
    broker = redis_broker()
    broker.client.flushdb()
    queue = "endpoint.pending-test"
    try:
        queued = enqueue(message_for("inference_run", "job-1", queue_name=queue), broker)
        delayed = broker.enqueue(
            message_for("inference_run", "job-2", queue_name=queue), delay=60_000
        )  # a retry's backoff
        held = pending_messages(queue, broker)
        assert sorted((message.message_id, tuple(message.args)) for message in held) == sorted(
            [(queued.message_id, ("job-1",)), (delayed.message_id, ("job-2",))]
        )
        assert pending_messages("endpoint.other", broker) == []
        broker.client.flushdb()  # what a Redis restart without persistence leaves
        assert pending_messages(queue, broker) == []
    finally:
        broker.client.flushdb()
        broker.close()
    assert pending_messages(queue, StubBroker()) is None


def test_a_start_while_the_broker_is_down_is_answered_and_the_job_runs_once_it_is_back(site, use_broker):
    configured = dramatiq.get_broker()
    serve(site, "Async", queues={"endpoint.elsewhere"})  # the endpoint is in service; its queue has no consumer
    use_broker(redis_broker("redis://127.0.0.1:1/0"))  # nothing listens there: every send is refused
    job_id = site.submit(txt2img())
    started = site.start(job_id)
    assert started.status == 202, started.body
    job = InferenceJob.objects.get(pk=job_id)
    assert job.status == "inprogress" and job.message_id == ""  # known to have no message
    use_broker(configured)
    serve(site, "Async")
    queue = {site.endpoints["Async"].queue_name}
    assert services.inference_requeue_lost(queues=queue, worker=None, older_than=0.0) == 1
    assert site.wait(job_id)["status"] == "succeed"
    assert InferenceJob.objects.get(pk=job_id).attempts == 1
    assert services.inference_requeue_lost(queues=queue, worker=None, older_than=0.0) == 0


def test_jobs_a_restarted_redis_lost_are_queued_again_by_the_workers_sweep(site, use_broker, settings):
    broker = use_broker(redis_broker())
    broker.client.flushdb()
    settings.ESD_REQUEUE_AFTER_SECONDS = 0.5
    serve(site, "Async", queues={"endpoint.elsewhere"})
    queue = {site.endpoints["Async"].queue_name}
    job_ids = [site.submit(txt2img(seed=seed)) for seed in (1, 2)]
    for job_id in job_ids:
        assert site.start(job_id).status == 202
    # waiting in the queue is not lost: a sweep leaves them alone
    assert services.inference_requeue_lost(queues=queue, worker=None, older_than=0.0) == 0
    broker.client.flushdb()  # Redis restarts without persistence: the two messages are gone
    serve(site, "Async", queues=queue)  # a worker whose own sweep notices within ESD_REQUEUE_AFTER_SECONDS
    for job_id in job_ids:
        assert site.wait(job_id, timeout=60)["status"] == "succeed"
    assert [job.attempts for job in InferenceJob.objects.filter(pk__in=job_ids)] == [1, 1]


def test_a_job_held_by_a_worker_that_runs_nothing_is_freed_by_its_sweep(site):
    # a run that lost its database before it could let go: the row says this worker holds it, no thread does
    serve(site, "Async", queues={"endpoint.elsewhere"})
    job_id = site.submit(txt2img())
    site.start(job_id)
    live = Worker.objects.get(stopped_at__isnull=True)
    other = another_live_worker(live)
    assert claim(job_id, live) is not None
    assert claim(job_id, other) is None  # another live worker's redelivered message: taken
    assert claim(job_id, live) is not None  # this worker's own retry: no thread here runs it, so it may
    InferenceJob.objects.filter(pk=job_id).update(attempts=1)
    queue = {site.endpoints["Async"].queue_name}
    assert services.inference_requeue_lost(queues=queue, worker=other, older_than=0.0) == 0  # not other's
    assert services.inference_requeue_lost(queues=queue, worker=live, older_than=0.0) == 1
    job = InferenceJob.objects.get(pk=job_id)
    assert job.worker_id is None and job.claimed_at is None and job.message_id
    serve(site, "Async")
    assert site.wait(job_id)["status"] == "succeed"


def _unreachable_database(monkeypatch) -> None:
    connection.close()
    if connection.vendor == "postgresql":
        monkeypatch.setitem(connection.settings_dict, "PORT", 1)
    else:
        monkeypatch.setitem(connection.settings_dict, "NAME", "/nonexistent/esd/db.sqlite3")


def test_requests_while_the_database_is_down_get_a_503_to_retry(transactional_db, admin_user, token_for, monkeypatch):
    from tests.conftest import EsdClient

    token = token_for(admin_user)
    browser = Client(raise_request_exception=False)
    browser.force_login(admin_user)
    _unreachable_database(monkeypatch)
    try:
        answer = EsdClient().call("GET", "inferences", token=token)
        assert answer.status == 503
        assert "database is unavailable" in answer.body["message"] and answer.headers["Retry-After"] == "5"
        admin_page = browser.get("/admin/")
        assert admin_page.status_code == 503 and b"database is unavailable" in admin_page.content
    finally:
        connection.close()
        monkeypatch.undo()
    assert EsdClient().call("GET", "inferences", token=token).status == 200  # and it recovers by itself


@pytest.fixture
def site_on_a_small_disk(transactional_db, request, tmpfs, settings):
    settings.ESD_STORAGE = "local"
    settings.ESD_STORAGE_ROOT = tmpfs("64m")
    return request.getfixturevalue("site")


def fill(folder) -> None:
    with contextlib.suppress(OSError), (folder / "filler").open("wb") as filler:
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()


def test_a_job_whose_outputs_do_not_fit_fails_with_the_reason(site_on_a_small_disk, settings):
    site = site_on_a_small_disk
    idle = serve(site, "Async", queues={"endpoint.elsewhere"})  # in service, running nothing yet
    job_id = site.submit(txt2img())
    assert site.start(job_id).status == 202
    fill(settings.ESD_STORAGE_ROOT)  # the payload is stored (and frozen at start); the images will not be
    idle.stop()
    serve(site, "Async")
    data = site.wait(job_id, timeout=90)
    assert data["status"] == "failed"
    job = InferenceJob.objects.get(pk=job_id)
    assert "the store has no room" in job.error and "(after 3 attempts)" in job.error, job.error
    assert not [path for path in settings.ESD_STORAGE_ROOT.rglob(".incoming-*")]
