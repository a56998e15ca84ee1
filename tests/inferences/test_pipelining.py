"""A worker's pictures are encoded and stored off the device's path (issue 28.1): the finisher settles a job while
the worker thread runs the next one, and what fails there fails (or sends again) that job alone."""

import threading
import time

import numpy as np
from PIL import Image

from esd.storage import StorageError
from inferences import execution
from inferences.engine import runner
from inferences.engine.request import images
from inferences.finisher import FINISHER
from inferences.models import InferenceJob

from .conftest import txt2img
from .jobs import images_of, serve


def started_jobs(site, count: int) -> list[str]:
    serve(site, "Async", queues={"endpoint.elsewhere"})  # in service; nothing takes the messages
    ids = []
    for index in range(count):
        job_id = site.submit(txt2img(steps=2, seed=100 + 10 * index, batch_size=2))
        assert site.start(job_id).status == 202
        ids.append(job_id)
    return ids


def run_pipelined(job_ids: list[str]) -> None:
    """What a worker thread does with these messages one after another: each returns once its engine is done."""
    for job_id in job_ids:
        execution.inference_execute(job_id=job_id, worker=None, device="cpu", pipelined=True)
    assert FINISHER.wait_idle(timeout=60)


def test_the_next_job_runs_while_the_previous_ones_pictures_are_stored(site, monkeypatch):
    first, second = started_jobs(site, 2)
    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    write_outputs, run_batch = execution._write_outputs, runner.Engine.run_batch
    released = threading.Event()

    def slow_store(job, result):
        with lock:
            events.append(("store begins", str(job.pk)))
        if str(job.pk) == first:
            assert released.wait(timeout=60)  # the first job's store waits until the second job's engine ran
        names = write_outputs(job, result)
        with lock:
            events.append(("stored", str(job.pk)))
        return names

    def observed_run_batch(self, jobs):
        outcomes = run_batch(self, jobs)
        with lock:
            events.append(("engine done", str(jobs[0].progress.job_id)))
        if str(jobs[0].progress.job_id) == second:
            released.set()
        return outcomes

    monkeypatch.setattr(execution, "_write_outputs", slow_store)
    monkeypatch.setattr(runner.Engine, "run_batch", observed_run_batch)
    run_pipelined([first, second])
    assert events.index(("engine done", second)) < events.index(("stored", first))
    for job_id in (first, second):
        job = InferenceJob.objects.get(pk=job_id)
        assert job.status == "succeed" and job.image_names == ["image_0.png", "image_1.png"]
        assert job.timings["encode_seconds"] > 0  # encoded by the finisher, and timed there
    assert execution.running_here() == []  # the finisher forgot them once settled


def test_pipelined_and_stored_in_place_give_the_same_pictures(site):
    pipelined, in_place = started_jobs(site, 2)
    InferenceJob.objects.filter(pk=in_place).update(plan=InferenceJob.objects.get(pk=pipelined).plan)
    run_pipelined([pipelined])
    execution.inference_execute(job_id=in_place, worker=None, device="cpu")
    stored = [images_of(site.get(job_id).body["data"]) for job_id in (pipelined, in_place)]
    assert len(stored[0]) == 2
    for one, other in zip(*stored, strict=True):
        assert np.array_equal(np.asarray(one), np.asarray(other))
        assert one.info["parameters"] == other.info["parameters"]


def test_a_failing_encode_fails_only_its_job(site, monkeypatch):
    broken, fine = started_jobs(site, 2)
    encode = images.png_files
    failing_seed = InferenceJob.objects.get(pk=broken).plan["request"]["seed"]

    def png_files(pictures):
        if any(f"Seed: {failing_seed}," in (text or "") for _, text in pictures):
            raise ValueError("the encoder broke")
        return encode(pictures)

    monkeypatch.setattr(images, "png_files", png_files)
    run_pipelined([broken, fine])
    failed = InferenceJob.objects.get(pk=broken)
    assert failed.status == "failed" and "the encoder broke" in failed.error
    assert InferenceJob.objects.get(pk=fine).status == "succeed"


def test_a_store_that_is_down_sends_its_job_again_and_the_next_job_succeeds(site, monkeypatch):
    down, fine = started_jobs(site, 2)
    write_outputs = execution._write_outputs

    def store(job, result):
        if str(job.pk) == down:
            raise StorageError("the store is unreachable")
        return write_outputs(job, result)

    monkeypatch.setattr(execution, "_write_outputs", store)
    message_before = InferenceJob.objects.get(pk=down).message_id
    run_pipelined([down, fine])
    again = InferenceJob.objects.get(pk=down)
    # let go, with a new message on its queue (its own was done with when the finisher met the store)
    assert again.state == "queued" and again.worker_id is None and again.message_id not in ("", message_before)
    assert InferenceJob.objects.get(pk=fine).status == "succeed"
    monkeypatch.setattr(execution, "_write_outputs", write_outputs)
    run_pipelined([down])  # the message sent again runs it
    assert InferenceJob.objects.get(pk=down).status == "succeed"


def test_a_pictures_png_is_the_same_encoded_alone_or_beside_others():
    pictures = [(Image.new("RGB", (64, 48), (index * 40, 10, 200)), f"text {index}") for index in range(5)]
    assert images.png_files(pictures) == [images.png_bytes(image, text) for image, text in pictures]


def test_a_stopping_worker_waits_for_the_pictures_it_holds():
    from inferences.finisher import Finisher

    finisher = Finisher(threads=1, ahead=2)
    gate = threading.Event()
    stored: list[str] = []
    finisher.submit(lambda: (gate.wait(10), stored.append("a")), done=lambda: None)
    assert finisher.wait_idle(timeout=0.05) is False and finisher.pending() == 1
    threading.Timer(0.1, gate.set).start()
    started = time.monotonic()
    assert finisher.wait_idle(timeout=10) is True
    assert stored == ["a"] and time.monotonic() - started < 10
