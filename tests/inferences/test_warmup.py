"""A worker's warm-up (issue 28.3): before it takes a message or reports itself live, it runs ESD_ENGINE_WARMUP's
sizes with the checkpoint its endpoint ran last, so the first job finds the model loaded."""

from endpoints.models import Endpoint, Worker
from esd.signals import worker_starting
from inferences import engine_options, warmup

from .conftest import txt2img
from .jobs import serve


def test_a_worker_warms_up_with_its_endpoints_last_checkpoint_before_it_reports_itself_live(site, settings):
    serve(site, "Async")
    first = site.submit(txt2img(steps=2))
    site.start(first)
    assert site.wait(first)["status"] == "succeed"
    settings.ESD_ENGINE_WARMUP = [(64, 64), (64, 96)]
    engine_options._engines.clear()  # a new worker process: nothing loaded
    endpoint = Endpoint.objects.get(pk=site.endpoints["Async"].pk)
    seen: list[tuple[int, int]] = []

    def after_the_warm_up(*, endpoint, device, **kwargs):  # connected after the app's receiver: runs after it
        engine = engine_options._engines.get(device)
        loaded = len(engine.pipelines) if engine is not None else 0
        seen.append((loaded, Worker.objects.filter(endpoint=endpoint, stopped_at__isnull=True).count()))

    worker_starting.connect(after_the_warm_up)
    try:
        serve(site, "Async")
    finally:
        worker_starting.disconnect(after_the_warm_up)
    assert seen == [(1, 1)]  # the model was loaded, and the new worker was not registered yet (only the first one)
    assert Worker.objects.filter(endpoint=endpoint, stopped_at__isnull=True).count() == 2
    second = site.submit(txt2img(steps=2, seed=5))
    site.start(second)
    assert site.wait(second)["status"] == "succeed"
    from inferences.models import InferenceJob

    assert InferenceJob.objects.get(pk=second).timings["model_cache_hit"] == 1.0  # found loaded


def test_an_endpoint_that_has_run_nothing_starts_cold(site, settings):
    settings.ESD_ENGINE_WARMUP = [(64, 64)]
    endpoint = Endpoint.objects.get(pk=site.endpoints["Async"].pk)
    assert warmup.last_checkpoint(endpoint) is None
    assert warmup.warm_up(endpoint=endpoint, device="cpu") == 0
    settings.ESD_ENGINE_WARMUP = []
    assert warmup.warm_up(endpoint=endpoint, device="cpu") == 0  # off by default


def test_a_compiled_worker_warms_up_every_unet_bucket_it_can_meet(settings):
    """One loop per bucket of rows (two an image), up to the most images a loop takes there: a job's batch of 8,
    or ESD_MAX_BATCH_IMAGES where batching is on (by default on CUDA); a CPU worker's UNet runs one image a call."""
    settings.ESD_ENGINE_COMPILE, settings.ESD_MAX_IMAGES_PER_JOB, settings.ESD_MAX_BATCH_IMAGES = "off", 16, 16
    assert warmup.warm_up_counts("cuda") == [1]  # eager: one picture loads the model
    settings.ESD_ENGINE_COMPILE, settings.ESD_BATCH_WINDOW_MS = "reduce-overhead", -1
    assert warmup.warm_up_counts("cuda:0") == [1, 2, 4, 8, 16]  # buckets of 2 to 32 rows
    assert warmup.warm_up_counts("cpu") == [1]
    settings.ESD_BATCH_WINDOW_MS = 0  # batching off: a job's batch of 8 at most, 16 rows
    assert warmup.warm_up_counts("cuda") == [1, 2, 4, 8]
    settings.ESD_BATCH_WINDOW_MS, settings.ESD_MAX_BATCH_IMAGES = 25, 12  # 24 rows run in the 32-row bucket
    assert warmup.warm_up_counts("cuda") == [1, 2, 4, 8, 16]


def test_a_warm_up_loop_is_jobs_that_share_one_loop():
    from inferences.engine.request.limits import Limits
    from inferences.engine.request.payload import parse_request

    jobs = warmup.warm_up_jobs(16, 64, 96)
    assert [job["batch_size"] for job in jobs] == [8, 8]
    assert [job["batch_size"] for job in warmup.warm_up_jobs(4, 64, 96)] == [4]
    assert [job["batch_size"] for job in warmup.warm_up_jobs(12, 64, 96)] == [8, 4]
    requests = [parse_request("txt2img", job, Limits()) for job in jobs]
    assert {(req.width, req.height, req.steps, req.sampler) for req in requests} == {(64, 96, 2, "Euler")}
    assert len({job["seed"] for job in jobs}) == len(jobs)
