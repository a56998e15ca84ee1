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
