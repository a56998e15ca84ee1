"""Dynamic batching through the real worker: queued jobs of one endpoint share a loop, each settled on its own."""

from datetime import timedelta

import numpy as np
from django.utils import timezone

from endpoints.models import Worker
from inferences.batching import batch_window, take_companions
from inferences.execution import claim
from inferences.models import InferenceJob

from .conftest import txt2img
from .jobs import another_live_worker, images_of, serve


def queue_jobs(site, payloads) -> list[str]:
    """Start the jobs while the endpoint's only worker consumes another queue: they wait, queued."""
    serve(site, "Async", queues={"endpoint.elsewhere"})
    ids = [site.submit(payload) for payload in payloads]
    for job_id in ids:
        assert site.start(job_id).status == 202
    return ids


PAYLOADS = [txt2img(steps=4, prompt=f"a boat number {k}", seed=100 + k, cfg_scale=5.0 + k) for k in range(3)]


def test_queued_jobs_run_in_one_loop_and_give_the_images_they_give_alone(site, settings):
    settings.ESD_BATCH_WINDOW_MS = 50
    ids = queue_jobs(site, [*PAYLOADS, txt2img(steps=4, seed=7, batch_size=2)])
    for worker in site.workers:
        worker.stop()
    serve(site, "Async")
    done = [site.wait(job_id) for job_id in ids]
    assert [data["status"] for data in done] == ["succeed"] * 4
    jobs = [InferenceJob.objects.get(pk=job_id) for job_id in ids]
    assert jobs[0].batch_id is not None and len({job.batch_id for job in jobs}) == 1
    assert [job.batch_images for job in jobs] == [5] * 4
    assert [job.batch_share for job in jobs] == [0.2, 0.2, 0.2, 0.4]
    assert all(job.timings["batch_jobs"] == 4 and job.timings["unet_seconds_per_image"] > 0 for job in jobs)

    settings.ESD_BATCH_WINDOW_MS = 0  # the same jobs one at a time
    alone_ids = [site.submit(payload) for payload in PAYLOADS]
    for job_id in alone_ids:
        site.start(job_id)
    alone = [site.wait(job_id) for job_id in alone_ids]
    assert all(InferenceJob.objects.get(pk=job_id).batch_id is None for job_id in alone_ids)
    for batched, single in zip(done[:3], alone, strict=True):
        [mine], [theirs] = images_of(batched), images_of(single)
        assert np.array_equal(np.asarray(mine), np.asarray(theirs))


def test_a_job_that_cannot_share_the_loop_is_left_queued(site, settings):
    settings.ESD_BATCH_WINDOW_MS = 20
    ids = queue_jobs(site, [PAYLOADS[0], txt2img(steps=5, seed=3), PAYLOADS[1]])
    live = Worker.objects.get(stopped_at__isnull=True)
    leader = claim(ids[0], live)
    companions = take_companions(leader, live, "cpu")
    assert [str(job.pk) for job in companions] == [ids[2]]  # the 5-step job has another schedule
    assert InferenceJob.objects.get(pk=ids[1]).claimed_at is None


def test_the_batch_stays_within_its_image_budget(site, settings):
    settings.ESD_BATCH_WINDOW_MS = 20
    settings.ESD_MAX_BATCH_IMAGES = 3
    ids = queue_jobs(site, [PAYLOADS[0], txt2img(steps=4, seed=5, batch_size=3), PAYLOADS[1], PAYLOADS[2]])
    live = Worker.objects.get(stopped_at__isnull=True)
    companions = take_companions(claim(ids[0], live), live, "cpu")
    assert sorted(str(job.pk) for job in companions) == sorted([ids[2], ids[3]])  # 1 + 1 + 1; the 3-image job waits


def test_a_worker_killed_mid_batch_loses_none_of_its_jobs(site, settings):
    settings.ESD_BATCH_WINDOW_MS = 20
    ids = queue_jobs(site, PAYLOADS)
    # Worker rows without a heartbeat thread: the serving worker's own thread could beat between the ageing below
    # and the claims, and bring it back to life (a race seen once in eight runs).
    live = another_live_worker(site.workers[-1].record)
    companions = take_companions(claim(ids[0], live), live, "cpu")
    assert len(companions) == 2
    assert all(InferenceJob.objects.get(pk=job_id).worker_id == live.pk for job_id in ids)  # each claimed per job
    other = another_live_worker(live)
    assert all(claim(job_id, other) is None for job_id in ids)  # held while their worker lives
    Worker.objects.filter(pk=live.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    assert all(claim(job_id, other) is not None for job_id in ids)  # any worker takes each one again


def test_the_window_is_on_for_cuda_and_off_for_cpu_unless_set(settings):
    settings.ESD_BATCH_WINDOW_MS = -1
    assert batch_window("cuda:0") == 0.025 and batch_window("cpu") == 0
    settings.ESD_BATCH_WINDOW_MS = 10
    assert batch_window("cpu") == 0.01


def test_the_job_page_and_metrics_show_the_batch(site, settings, admin_client):
    settings.ESD_BATCH_WINDOW_MS = 50
    ids = queue_jobs(site, [*PAYLOADS, txt2img(steps=4, seed=7, batch_size=2)])
    for worker in site.workers:
        worker.stop()
    serve(site, "Async")
    for job_id in ids:
        assert site.wait(job_id)["status"] == "succeed"
    job = InferenceJob.objects.get(pk=ids[3])
    page = admin_client.get(f"/admin/inferences/inferencejob/{job.pk}/change/").content.decode()
    assert f"?batch_id={job.batch_id}" in page and "2 of its 5 images (40%), with 3 other job(s)" in page
    listed = admin_client.get(f"/admin/inferences/inferencejob/?batch_id={job.batch_id}")
    assert listed.status_code == 200 and listed.context["cl"].result_count == 4
    metrics = admin_client.get("/metrics").content.decode()
    endpoint = site.endpoints["Async"].name
    assert f'esd_endpoint_batch_images{{endpoint="{endpoint}"}} 5.0' in metrics
    assert f'esd_endpoint_batch_images_max{{endpoint="{endpoint}"}} 5.0' in metrics
    seconds = next(line for line in metrics.splitlines() if line.startswith("esd_endpoint_unet_seconds_per_image{"))
    assert float(seconds.split()[-1]) > 0
