"""A payload never kills a worker: its peak memory is estimated before it runs, a job that cannot fit is refused at
start (and again by the worker, on its own device), large pictures decode in tiles, and running out of memory fails
that job with a reason while the worker goes on serving."""

import pytest

from inferences.engine import generate as generate_module
from inferences.engine.errors import EngineError
from inferences.engine.request import memory
from inferences.engine.request.identify import SD15, header_entries
from inferences.engine.request.job_models import resolve_models
from inferences.engine.request.limits import Limits
from inferences.engine.request.memory import GIB, ModelShape, default_budget, estimate
from inferences.engine.request.options import EngineOptions, JobFiles
from inferences.engine.request.payload import parse_request
from inferences.engine.runner import Engine
from inferences.models import InferenceJob

from .conftest import png_b64, red_disc, txt2img
from .jobs import deploy, serve
from .test_identify import meta_pipeline

LIMITS = Limits()


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
    for sampler in ("Euler a", "UniPC"):  # k-diffusion's sampler and A1111's own timestep one
        result = engine.run("txt2img", txt2img(width=128, height=128, sampler_name=sampler), files)
        assert tiled and len(result.images) == 1
        tiled.clear()
    assert len(whole.images) == 1


def held_names(request, files):
    return sorted(model.name for model in resolve_models(request, files).held())


def estimate_of(request, files, header_of, dtype_bytes=4):
    """What the plan made at start holds for the job, evaluated at `dtype_bytes`."""
    return memory.memory_needs(request, resolve_models(request, files), header_of).estimate(dtype_bytes)


def test_every_model_a_job_holds_is_in_its_estimate(models):
    """Issue 26.6: admission counted the checkpoint, ControlNets and a hires checkpoint, not LoRAs, VAEs, embeddings
    or the hires upscaler (a 1.5 GB LoRA on a 64x64 job peaked at 2,287 MiB against a 2,048 MiB budget)."""
    files = JobFiles(
        checkpoint=models["checkpoint"], checkpoints=(models["checkpoint"], models["other"]), vaes=(models["vae"],),
        loras=(models["lora"],), embeddings=(models["embedding"],), upscalers=(models["esrgan"],),
    )  # fmt: skip
    hires = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "2x-TinyESRGAN", "hr_checkpoint_name": "tiny-other"}
    full = parse_request("txt2img", txt2img(prompt="style cat <lora:watercolor:0.8>", **hires), LIMITS)
    plain = parse_request("txt2img", txt2img(prompt="a cat", override_settings={"sd_vae": "None"}), LIMITS)
    assert held_names(full, files) == [
        "2x-TinyESRGAN.safetensors", "blue-vae.safetensors", "style.safetensors", "tiny-other.safetensors",
        "watercolor.safetensors",
    ]  # fmt: skip
    assert held_names(plain, files) == []  # no tag, no mention, VAE "None", no hires fix

    def header_of(model):
        return header_entries(model.path)

    with_all = estimate_of(full, files, header_of)
    alone = estimate_of(plain, files, header_of)
    held = ("other", "vae", "lora", "embedding")
    assert with_all.weights - alone.weights == 4 * sum(memory.parameter_count(header_of(models[k])) for k in held)
    assert with_all.upscale > 0 and alone.upscale == 0 and "upscaler" in with_all.describe()


def test_a_large_lora_is_refused_before_it_is_loaded(models):
    files = JobFiles(checkpoint=models["checkpoint"], loras=(models["lora"],))
    request = parse_request("txt2img", txt2img(prompt="cat <lora:watercolor:1>"), LIMITS)

    def header_of(model):  # the LoRA: 1.5 GB of fp32 weights, seen through its header alone
        if model is models["lora"]:
            return {"lora_unet_down.lora_down.weight": {"dtype": "F32", "shape": [375_000_000]}}
        return header_entries(model.path)

    need = estimate_of(request, files, header_of)
    with pytest.raises(EngineError, match=r"more than the 2\.0 GiB a worker has"):
        memory.check_fits(need, 2 * GIB, "a worker has")


def test_an_extras_job_counts_its_upscalers_and_lanczos_needs_nothing(models):
    files = JobFiles(upscalers=(models["esrgan"], models["compact"]))
    base = {"image": png_b64(red_disc((64, 64))), "resize_mode": 1, "upscaling_resize_w": 1024}
    base["upscaling_resize_h"] = 1024

    def estimated(**payload):
        request = parse_request("extra-single-image", {**base, **payload}, LIMITS)
        return estimate_of(request, files, lambda model: header_entries(model.path))

    lanczos = estimated(upscaler_1="Lanczos")
    one = estimated(upscaler_1="2x-TinyESRGAN")
    two = estimated(upscaler_1="2x-TinyESRGAN", upscaler_2="2x-TinyCompact", extras_upscaler_2_visibility=0.5)
    assert lanczos.total == memory.BASELINE_BYTES
    assert one.upscale >= memory.UPSCALE_CANVAS_BYTES * 1024 * 1024 and two.weights > one.weights


def upload(site, admin_user, model, type):
    from accounts import grants
    from checkpoints import services as checkpoint_services

    with model.path.open("rb") as handle:
        checkpoint = checkpoint_services.checkpoint_create_from_upload(
            actor=admin_user, type=type, name=model.name, chunks=iter([handle.read()])
        )
    grants.set_visibility(checkpoint, ["role-alice"])


def test_an_extras_job_that_cannot_fit_is_refused_at_start(site, settings, admin_user, models):
    # Issue 26.5: extra-single-image had no memory check at all
    upload(site, admin_user, models["esrgan"], "Upscaler")
    settings.ESD_WORKER_MEMORY_BYTES = memory.BASELINE_BYTES + 256 * 1024**2  # the runtime, and 256 MiB to work in
    payload = {"image": png_b64(red_disc((256, 256))), "upscaling_resize": 8, "upscaler_1": "2x-TinyESRGAN"}
    job_id = site.submit(payload, task="extra-single-image", Upscaler=[models["esrgan"].name])
    answer = site.start(job_id)
    assert answer.status == 400
    assert "upscaler" in answer.body["message"] and "a worker has" in answer.body["message"]
    small = site.submit(
        {**payload, "upscaling_resize": 1.5}, task="extra-single-image", Upscaler=[models["esrgan"].name]
    )
    assert site.start(small).status == 202
    assert site.wait(small)["status"] == "succeed"


def test_a_lora_that_cannot_fit_is_refused_at_start(site, settings, admin_user, models):
    # Issue 26.6, through HTTP: a budget the job fits alone, and not with its LoRA's weights
    upload(site, admin_user, models["lora"], "Lora")
    files = JobFiles(checkpoint=models["checkpoint"], loras=(models["lora"],))
    request = parse_request("txt2img", txt2img(prompt="cat <lora:watercolor:1>"), LIMITS)
    alone = estimate_of(
        parse_request("txt2img", txt2img(prompt="cat"), LIMITS), files, lambda m: header_entries(m.path)
    )
    held = estimate_of(request, files, lambda m: header_entries(m.path))
    assert held.total > alone.total
    settings.ESD_WORKER_MEMORY_BYTES = (alone.total + held.total) // 2
    job_models = {"Stable-diffusion": [site.checkpoint.names[0]], "Lora": [models["lora"].name]}
    refused = site.submit(txt2img(prompt="cat <lora:watercolor:1>", steps=2), **job_models)
    answer = site.start(refused)
    assert answer.status == 400 and "this job needs about" in answer.body["message"]
    fits = site.submit(txt2img(prompt="cat", steps=2), **job_models)
    assert site.start(fits).status == 202
    assert site.wait(fits)["status"] == "succeed"


def test_a_job_that_cannot_finish_within_the_time_limit_is_refused_at_start(site, settings):
    """Issue 29.7: a 2048x2048 batch of 8 passed the memory check on a CPU endpoint and held its only worker for
    hours. The worker records its speed; start estimates a job's run time from it."""
    measured = site.submit(txt2img(steps=2))
    assert site.start(measured).status == 202
    assert site.wait(measured)["status"] == "succeed"
    timings = InferenceJob.objects.get(pk=measured).timings
    assert timings["unet_seconds_per_megapixel_step"] > 0
    # a slow endpoint, made exact: 2 s per megapixel-step (512x512 x 20 steps is 5.24 megapixel-steps, so ~10 s)
    InferenceJob.objects.filter(pk=measured).update(timings={**timings, "unet_seconds_per_megapixel_step": 2.0})
    settings.ESD_INFERENCE_TIME_LIMIT = 5
    slow = site.submit(txt2img(width=512, height=512, steps=20))
    answer = site.start(slow)
    assert answer.status == 400
    message = answer.body["message"]
    assert "this job would take about 10 s on esd-async-async (1 image(s), 20 steps, up to 512x512" in message
    assert "ran at 2 s per megapixel-step), more than the 5 s a job may run (ESD_INFERENCE_TIME_LIMIT)" in message
    small = site.submit(txt2img(steps=2))  # 64x64 x 2 steps: 0.016 s at that speed
    assert site.start(small).status == 202
    assert site.wait(small)["status"] == "succeed"


def test_a_composable_prompt_counts_a_unet_row_per_sub_prompt(files):
    """Issue 30.1: A1111's CFGDenoiser runs each sub-prompt of `a AND b AND c` beside the negative prompt: 4 rows per
    image against 2, so the UNet's part of the estimate doubles."""

    def header_of(model):
        return header_entries(model.path)

    plain = estimate_of(parse_request("txt2img", txt2img(prompt="a b c"), LIMITS), files, header_of)
    composed = estimate_of(parse_request("txt2img", txt2img(prompt="a AND b AND c"), LIMITS), files, header_of)
    assert composed.unet == 2 * plain.unet and composed.weights == plain.weights
