"""A payload never kills a worker: its peak memory is estimated before it runs, a job that cannot fit is refused at
start (and again by the worker, on its own device), large pictures decode in tiles, and running out of memory fails
that job with a reason while the worker goes on serving."""

import pytest

from inferences.engine import generate as generate_module
from inferences.engine import memory
from inferences.engine.errors import EngineError
from inferences.engine.identify import SD15, header_entries
from inferences.engine.memory import GIB, ModelShape, default_budget, estimate
from inferences.engine.options import EngineOptions, JobFiles
from inferences.engine.runner import Engine
from inferences.models import InferenceJob

from .conftest import txt2img
from .jobs import deploy, serve
from .test_identify import meta_pipeline


def tiny_shape(models) -> ModelShape:
    return ModelShape.of("tiny", header_entries(models["checkpoint"].path))


def test_the_estimate_grows_with_size_and_batch_and_tiling_bounds_the_decode(models):
    shape = tiny_shape(models)
    small, large, batch = (estimate(shape, w, h, b, 4) for w, h, b in ((512, 512, 1), (1024, 1024, 1), (1024, 1024, 4)))
    assert small.total < large.total < batch.total
    assert large.unet == 4 * small.unet and batch.unet == 4 * large.unet  # pixels x batch
    assert batch.vae == large.vae  # one image decoded at a time
    huge = estimate(shape, 2048, 2048, 1, 4)
    assert huge.tiled and not large.tiled and huge.vae < large.vae  # a tile, not the picture
    assert estimate(shape, 512, 512, 1, 2).weights * 2 == small.weights  # fp16 halves the weights
    assert "UNet" in huge.describe() and "tiled" in huge.describe()


def test_a_real_sd15_at_2048_batch_8_does_not_fit_a_24_gib_cpu_machine_but_512_does():
    """SD 1.5's real header (parameters and widths from the shipped config, no weights): the case the issue names."""
    pipe = meta_pipeline("sd15")
    shape = ModelShape(
        parameters=sum(sum(p.numel() for p in pipe[part].parameters()) for part in ("unet", "vae", "text_encoder")),
        unet_width=320,
        vae_width=128,
        tile=512,
    )
    budget = default_budget(24 * GIB)
    with pytest.raises(EngineError, match=r"needs about .* more than the 21\.6 GiB a worker has"):
        memory.check_fits(estimate(shape, 2048, 2048, 8, 4), budget, "a worker has")
    memory.check_fits(estimate(shape, 512, 512, 1, 4), budget, "a worker has")
    assert SD15.family == "sd1"


@pytest.fixture
def site(transactional_db, esd, store, admin_user, make_role, make_user, token_for, models, settings):
    settings.ESD_WORKER_HEARTBEAT_SECONDS = 0.2
    deployment = deploy(esd, admin_user, make_role, make_user, token_for, models["checkpoint"].path)
    serve(deployment, "Async")
    yield deployment
    for worker in deployment.workers:
        worker.stop()


def test_a_job_that_cannot_fit_a_worker_is_refused_at_start_not_retried(site, settings, models):
    # the tiny model's 2048 x 2048 batch of 8 needs about 3.9 GiB; give the workers 2 GiB
    settings.ESD_WORKER_MEMORY_BYTES = 2 * GIB
    job_id = site.submit(txt2img(width=2048, height=2048, batch_size=8, steps=2))
    answer = site.start(job_id)
    assert answer.status == 400
    message = answer.body["message"]
    assert "this job needs about" in message and "more than the 2.0 GiB a worker has" in message
    assert "ESD_WORKER_MEMORY_BYTES" in message and "lower width/height or batch_size" in message
    job = InferenceJob.objects.get(pk=job_id)
    assert job.status == "created" and job.attempts == 0 and job.message_id == ""  # never queued, never retried
    fits = site.submit(txt2img(steps=2))
    assert site.start(fits).status == 202
    assert site.wait(fits)["status"] == "succeed"


def test_the_worker_checks_again_on_its_own_device_before_loading(models, u2net_home):
    engine = Engine(EngineOptions(u2net_home=u2net_home, memory_bytes=GIB // 2))
    files = JobFiles(checkpoint=models["checkpoint"])
    with pytest.raises(EngineError, match=r"more than the 0\.5 GiB this worker \(cpu\) has"):
        engine.run("txt2img", txt2img(width=1024, height=1024, batch_size=8), files)
    assert len(engine.pipelines) == 0  # refused before the model was loaded


def test_running_out_of_memory_fails_the_job_and_the_worker_goes_on(engine, files, monkeypatch):
    real = generate_module.generate

    def exhausted(*args, **kwargs):
        raise MemoryError("cannot allocate 34359738368 bytes")

    monkeypatch.setattr(generate_module, "generate", exhausted)
    with pytest.raises(EngineError, match=r"ran out of memory running this job \(estimated about .*cannot allocate"):
        engine.run("txt2img", txt2img(), files)
    monkeypatch.setattr(generate_module, "generate", real)
    assert len(engine.run("txt2img", txt2img(), files).images) == 1


def test_large_pictures_decode_in_tiles_and_small_ones_whole(engine, files, monkeypatch):
    from diffusers import AutoencoderKL

    tiled: list[tuple[int, ...]] = []
    original = AutoencoderKL.tiled_decode

    def spy(self, z, *args, **kwargs):
        tiled.append(tuple(z.shape))
        return original(self, z, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "tiled_decode", spy)
    whole = engine.run("txt2img", txt2img(width=128, height=128), files)
    assert tiled == []
    monkeypatch.setattr(generate_module, "TILE_ABOVE_PIXELS", 96 * 96)  # the tiny VAE's tiles are 64 px
    for sampler in ("Euler a", "DDIM"):  # the k-diffusion loop and diffusers' pipeline
        result = engine.run("txt2img", txt2img(width=128, height=128, sampler_name=sampler), files)
        assert tiled and len(result.images) == 1
        tiled.clear()
    assert len(whole.images) == 1
