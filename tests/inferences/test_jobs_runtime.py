"""Job plumbing beyond the routes: the signed webhook, recovery after restarts and dead workers, redelivery."""

import base64
import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dramatiq
import pytest
from django.utils import timezone

from endpoints.models import Worker
from inferences import services
from inferences.execution import claim
from inferences.models import InferenceJob
from tests.conftest import stop_worker, wait_for
from tests.esd.test_storage import http

from .conftest import png_b64, red_disc, txt2img
from .jobs import another_live_worker, images_of, result_document, serve


class Hooks:
    def __init__(self) -> None:
        self.received: list[tuple[dict, str, bytes]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.received.append((dict(self.headers), self.headers["X-ESD-Event"], body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self) -> list[str]:
        return [event for _, event, _ in self.received]


@pytest.fixture
def hooks(settings):
    receiver = Hooks()
    settings.ESD_WEBHOOK_URL = receiver.url
    settings.ESD_WEBHOOK_SECRET = "s3cret"
    broker = dramatiq.get_broker()
    broker.declare_queue("webhooks")
    worker = dramatiq.Worker(broker, queues={"webhooks"}, worker_threads=1, worker_timeout=50)
    worker.start()
    yield receiver
    stop_worker(worker)
    receiver.server.shutdown()


def test_webhooks_are_signed_and_sent_on_start_success_and_failure(site, hooks, allow_loopback):
    serve(site, "Async")
    good = site.submit(txt2img())
    site.start(good)
    site.wait(good)
    # a damaged picture passes start (its header is read) and fails the job on the worker, which decodes it
    truncated = base64.b64encode(base64.b64decode(png_b64(red_disc()))[:-40]).decode()
    bad = site.submit(txt2img(init_images=[truncated], denoising_strength=0.5), task="img2img")
    site.start(bad)
    site.wait(bad)
    wait_for(lambda: len(hooks.received) == 4, timeout=20)
    assert sorted(hooks.events()) == ["failed", "started", "started", "succeed"]
    for headers, event, body in hooks.received:
        stamp, mac = headers["X-ESD-Signature"].split(",")
        timestamp = stamp.removeprefix("t=")
        expected = hmac.new(b"s3cret", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        assert mac == f"v1={expected}"
        payload = json.loads(body)
        assert payload["event"] == event and payload["inference_id"] in (good, bad)
    failure = next(json.loads(body) for _, event, body in hooks.received if event == "failed")
    assert failure["inference_id"] == bad and "init_images[0] is a damaged or truncated image" in failure["error"]


def test_webhooks_keep_to_the_download_address_rules(site, hooks, caplog):
    serve(site, "Async")  # loopback is not allowed here: the POST is refused, not sent
    job_id = site.submit(txt2img())
    site.start(job_id)
    assert site.wait(job_id)["status"] == "succeed"
    wait_for(lambda: "Webhook for job" in caplog.text, timeout=20)
    assert hooks.received == [] and "loopback" in caplog.text


def test_queued_jobs_are_re_enqueued_when_workers_start_again(site):
    # started while nothing consumed the endpoint's queue, and the messages were lost (an in-process broker restart)
    serve(site, "Async", queues={"endpoint.elsewhere"})
    job_id = site.submit(txt2img())
    assert site.start(job_id).status == 202
    dramatiq.get_broker().flush_all()
    for worker in site.workers:
        worker.stop()
    serve(site, "Async")
    assert services.inference_recover(queues={site.endpoints["Async"].queue_name}) == 1
    assert site.wait(job_id)["status"] == "succeed"


def test_a_job_whose_worker_died_is_claimed_again_and_not_run_twice(site):
    serve(site, "Async", queues={"endpoint.elsewhere"})
    job_id = site.submit(txt2img())
    site.start(job_id)
    # a worker row without a heartbeat thread, so that its death below is not undone by a beat
    live = another_live_worker(site.workers[-1].record)
    other = another_live_worker(live)
    assert claim(job_id, live) is not None
    assert claim(job_id, other) is None  # a redelivered message finds it taken by a live worker
    Worker.objects.filter(pk=live.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    again = claim(job_id, None)
    assert again is not None and InferenceJob.objects.get(pk=job_id).attempts == 2


def test_after_three_dead_attempts_the_job_fails_with_the_reason(site):
    serve(site, "Async", queues={"endpoint.elsewhere"})
    job_id = site.submit(txt2img())
    site.start(job_id)
    InferenceJob.objects.filter(pk=job_id).update(state="running", attempts=3, claimed_at=timezone.now(), worker=None)
    services.inference_recover()
    job = InferenceJob.objects.get(pk=job_id)
    assert job.status == "failed" and "stopped during each of 3 attempts" in job.error


def test_a_cancelled_or_deleted_job_is_not_claimed(site):
    serve(site, "Async", queues={"endpoint.elsewhere"})
    job_id = site.submit(txt2img())
    site.start(job_id)
    InferenceJob.objects.filter(pk=job_id).update(state="cancelling")
    assert claim(job_id, None) is None
    InferenceJob.objects.filter(pk=job_id).delete()
    assert claim(job_id, None) is None


def test_a_job_past_the_time_limit_fails_with_the_reason_and_the_worker_goes_on(site, settings):
    settings.ESD_INFERENCE_TIME_LIMIT = 1  # seconds; dramatiq's watchdog looks once a second
    serve(site, "Async")
    slow = site.submit(txt2img(steps=150, width=512, height=512, batch_size=4))  # far more than a second here
    site.start(slow)
    done = site.wait(slow, timeout=60)
    assert done["status"] == "failed"
    assert "ran past the time limit of 1 s (ESD_INFERENCE_TIME_LIMIT)" in InferenceJob.objects.get(pk=slow).error
    settings.ESD_INFERENCE_TIME_LIMIT = 3600
    quick = site.submit(txt2img(steps=2))
    site.start(quick)
    assert site.wait(quick)["status"] == "succeed"  # the same worker thread serves on
    assert Worker.objects.filter(stopped_at__isnull=True).count() == 1


def test_cancelling_a_job_whose_worker_died_ends_it_at_once(site):
    serve(site, "Async", queues={"endpoint.elsewhere"})
    job_id = site.submit(txt2img())
    site.start(job_id)
    dead = another_live_worker(site.workers[-1].record)  # a row without a heartbeat thread
    assert claim(job_id, dead) is not None
    Worker.objects.filter(pk=dead.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    answer = site.esd.call("PUT", f"inferences/{job_id}/cancel", token=site.token)
    assert answer.status == 200
    job = InferenceJob.objects.get(pk=job_id)
    assert (job.status, job.cancelled) == ("failed", True)
    assert site.get(job_id).body["data"]["status"] == "failed"


def test_a_job_asked_to_stop_whose_worker_then_died_is_cancelled_by_the_sweep(site):
    serve(site, "Async", queues={"endpoint.elsewhere"})
    job_id = site.submit(txt2img())
    site.start(job_id)
    holder = another_live_worker(site.workers[-1].record)
    assert claim(job_id, holder) is not None
    assert site.esd.call("PUT", f"inferences/{job_id}/cancel", token=site.token).status == 200
    job = InferenceJob.objects.get(pk=job_id)
    assert (job.status, job.state) == ("inprogress", "cancelling")  # its live worker stops it at a step
    Worker.objects.filter(pk=holder.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    assert claim(job_id, None) is None  # no claim takes a job asked to stop
    services.inference_recover(queues={site.endpoints["Async"].queue_name})  # a worker's start-up sweep
    job = InferenceJob.objects.get(pk=job_id)
    assert (job.status, job.cancelled) == ("failed", True)


def gauge(metrics: str, family: str, endpoint: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(f'{family}{{endpoint="{endpoint}"'))
    return float(line.split()[-1])


def test_metrics_count_queued_and_running_jobs(site, admin_client):
    serve(site, "Async")
    slow = site.submit(txt2img(steps=150, width=512, height=512, batch_size=4))
    site.start(slow)
    try:
        assert wait_for(lambda: InferenceJob.objects.get(pk=slow).claimed_at is not None)  # running on the worker
        waiting = [site.submit(txt2img(steps=2, seed=k)) for k in range(2)]
        for job_id in waiting:
            site.start(job_id)
        name = site.endpoints["Async"].name
        metrics = admin_client.get("/metrics").content.decode()
        assert gauge(metrics, "esd_endpoint_queue_depth", name) == 2
        assert gauge(metrics, "esd_endpoint_backlog", name) == 3
        # The broker's count alone is not the signal: the in-process broker hands every message to its worker at
        # once, and a broker that restarted has none. The database still knows what waits.
        dramatiq.get_broker().flush_all()
        metrics = admin_client.get("/metrics").content.decode()
        assert gauge(metrics, "esd_endpoint_queue_depth", name) == 2
        assert gauge(metrics, "esd_endpoint_backlog", name) == 3
    finally:  # the slow job stops at its next step
        assert site.esd.call("PUT", f"inferences/{slow}/cancel", token=site.token).status == 200
    assert services.inference_recover(queues={site.endpoints["Async"].queue_name}) == 2  # lost messages sent again
    assert [site.wait(job_id)["status"] for job_id in waiting] == ["succeed", "succeed"]
    # busy workers come from the heartbeat, which reports the finished job until its next beat
    assert wait_for(lambda: gauge(admin_client.get("/metrics").content.decode(), "esd_endpoint_backlog", name) == 0)


def test_a_payload_replaced_after_start_changes_nothing(site):
    # Issue 26.7: the presigned PUT stays valid after start and the worker read the object again, so a job checked
    # at 64x64 could run as 512x512 x 150 steps (and, batched, hold other users' jobs hostage).
    idle = serve(site, "Async", queues={"endpoint.elsewhere"})  # live, consuming nothing until the swap is done
    answer = site.create()
    assert answer.status == 201, answer.body
    created = answer.body["data"]["inference"]
    url = created["api_params_s3_upload_url"]
    assert http("PUT", url, json.dumps(txt2img(width=64, height=64)).encode())[0] == 200
    assert site.start(created["id"]).status == 202
    swapped = txt2img(width=128, height=128, steps=150, prompt="swapped")
    assert http("PUT", url, json.dumps(swapped).encode())[0] == 200  # the URL still takes it; nothing reads it
    idle.stop()
    serve(site, "Async")
    data = site.wait(created["id"])
    assert data["status"] == "succeed", data
    assert [image.size for image in images_of(data)] == [(64, 64)]
    assert data["params"]["input_body_s3"].endswith("/api_param.started.json")
    assert "swapped" not in json.dumps(result_document(data))
