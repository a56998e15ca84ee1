"""The hires fix (`enable_hr`) as A1111's txt2img runs it: A1111's target sizes and crop, latent and pixel upscalers
(uploaded ESRGAN-family models included), a second img2img pass of exactly `hr_second_pass_steps` steps with noise
drawn again from the same seeds, A1111's infotext fields, progress over both passes and the memory estimate."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from inferences.engine.errors import EngineError
from inferences.engine.request.limits import Limits
from inferences.engine.request.memory import ModelShape, estimate
from inferences.engine.request.options import JobFiles, NoProgress
from inferences.engine.request.payload import parse_request
from inferences.engine.sampling import ksampling

from .conftest import png_b64, red_disc, txt2img

LIMITS = Limits()


def hires(**overrides: object) -> dict[str, object]:
    payload = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent", "denoising_strength": 0.5, "steps": 4}
    payload.update(overrides)
    return txt2img(**payload)


def picture(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png))


@pytest.fixture
def hr_files(models) -> JobFiles:
    return JobFiles(
        checkpoint=models["checkpoint"],
        checkpoints=(models["checkpoint"], models["other"]),
        upscalers=(models["esrgan"], models["compact"]),
    )


@pytest.mark.parametrize(
    ("overrides", "upscaled", "final"),
    [
        ({"hr_scale": 2}, (128, 128), (128, 128)),
        ({"hr_scale": 1.5, "width": 96}, (144, 96), (144, 96)),
        ({"hr_resize_x": 160}, (160, 160), (160, 160)),  # one side given: the other keeps the aspect
        ({"hr_resize_y": 96, "width": 128}, (192, 96), (192, 96)),
        # both given: the upscaled picture covers the box and its latent is cropped to it (A1111's truncate_x/y)
        ({"hr_resize_x": 128, "hr_resize_y": 96}, (128, 128), (128, 96)),
    ],
)
def test_target_sizes_are_a1111s(overrides, upscaled, final) -> None:
    request = parse_request("txt2img", hires(**overrides), LIMITS)
    assert request.ignored == [] and request.hires is not None
    assert (request.hires.upscale_width, request.hires.upscale_height) == upscaled
    assert (request.hires.width, request.hires.height) == final
    assert request.largest_size == upscaled


def test_a_hires_size_past_the_limits_is_refused() -> None:
    with pytest.raises(EngineError, match="the hires fix would upscale to 4096x4096"):
        parse_request("txt2img", hires(width=512, height=512, hr_scale=8), LIMITS)


def test_the_second_pass_keeps_the_first_unless_told_otherwise() -> None:
    same = parse_request("txt2img", hires(hr_sampler_name="Use same sampler", hr_prompt="", hr_scheduler=None), LIMITS)
    assert same.hires.sampler is None and same.hires.prompt is None
    other = parse_request(
        "txt2img", hires(hr_sampler_name="DPM++ 2M", hr_scheduler="Karras", hr_prompt="a dog"), LIMITS
    )
    assert (other.hires.sampler, other.hires.schedule, other.hires.text) == ("DPM++ 2M", "karras", "a dog")
    tagged = parse_request("txt2img", hires(hr_prompt="a dog <lora:other:1>"), LIMITS)
    assert tagged.ignored == ["hr_prompt's extra networks (the second pass keeps the first pass's LoRAs)"]


def test_img2img_reports_enable_hr_as_a1111_ignores_it() -> None:
    payload = hires(init_images=[png_b64(red_disc())])
    assert parse_request("img2img", payload, LIMITS).ignored == ["enable_hr"]


@pytest.mark.parametrize(
    "upscaler", ["Latent", "Latent (nearest)", "Latent (bicubic antialiased)", "Lanczos", "Nearest", "None"]
)
def test_each_built_in_upscaler_gives_the_hires_size(engine, hr_files, upscaler: str) -> None:
    result = engine.run("txt2img", hires(hr_upscaler=upscaler, hr_second_pass_steps=2), hr_files)
    assert result.ignored == []
    assert picture(result.images[0]).size == (128, 128)


def test_the_infotext_carries_a1111s_hires_fields(engine, hr_files) -> None:
    result = engine.run("txt2img", hires(hr_second_pass_steps=3, hr_sampler_name="Euler", hr_prompt="a dog"), hr_files)
    text = picture(result.images[0]).info["parameters"]
    assert "Size: 64x64" in text  # the first pass's, as in A1111
    line = text.splitlines()[-1]
    # A1111's order: `Denoising strength` at its place among the fixed fields, then the hires fields as `init` adds
    # them (sampler, prompt, then the size, steps and upscaler); tests/inferences/test_infotext.py has the rest
    assert line.endswith(
        "Denoising strength: 0.5, RNG: CPU, Hires sampler: Euler, Hires prompt: a dog, Hires upscale: 2.0, "
        "Hires steps: 3, Hires upscaler: Latent, Version: esd-server"
    )
    resized = engine.run("txt2img", hires(hr_resize_x=128, hr_resize_y=96), hr_files)
    assert "Hires resize: 128x96, Hires upscaler: Latent" in picture(resized.images[0]).info["parameters"]
    assert picture(resized.images[0]).size == (128, 96)


def test_the_second_pass_runs_exactly_its_steps_from_a1111s_schedule(engine, hr_files, models, monkeypatch) -> None:
    from inferences.engine.models.loading import load_model
    from inferences.engine.request.options import EngineOptions

    passes: list[torch.Tensor] = []
    original = ksampling.sample

    def spy(**arguments):
        passes.append(arguments["sigmas"].cpu())
        return original(**arguments)

    monkeypatch.setattr(ksampling, "sample", spy)
    steps: list[tuple[int, int]] = []

    class Recorder(NoProgress):
        def step(self, done: int, total: int) -> None:
            steps.append((done, total))

        def cancelled(self) -> bool:
            return False

    engine.run("txt2img", hires(steps=6, hr_second_pass_steps=3, denoising_strength=0.5), hr_files, Recorder())
    first, second = passes
    assert len(first) == 7 and len(second) == 4  # 6 steps, then 3
    # A1111's setup_img2img_steps with explicit steps: the last 3 of a schedule of int(3 / 0.5) = 6 steps
    base = load_model(models["checkpoint"], None, EngineOptions()).base
    denoiser = ksampling.denoiser(base.unet, base.scheduler.config)
    full = ksampling.sigmas_for(denoiser, "Euler a", None, 6)
    assert torch.equal(second, full[6 - 2 - 1 :])
    assert steps[-1] == (9, 9) and [done for done, _ in steps] == sorted(done for done, _ in steps)


def test_the_same_seed_repeats_and_batches_keep_seed_plus_k(engine, hr_files) -> None:
    one = engine.run("txt2img", hires(batch_size=2), hr_files)
    again = engine.run("txt2img", hires(batch_size=2), hr_files)
    assert one.images[:2] == again.images[:2]
    second_alone = engine.run("txt2img", hires(seed=1235), hr_files)
    assert (
        np.abs(
            np.asarray(picture(one.images[1])).astype(int) - np.asarray(picture(second_alone.images[0])).astype(int)
        ).max()
        <= 1
    )  # image k of a batch is seed + k's picture (a batch's float sums may differ in the last bit)


def test_an_uploaded_upscaler_and_the_hires_checkpoint_are_found_among_the_jobs_models(engine, hr_files) -> None:
    model = engine.run("txt2img", hires(hr_upscaler="2x-TinyCompact", hr_second_pass_steps=2), hr_files)
    lanczos = engine.run("txt2img", hires(hr_upscaler="Lanczos", hr_second_pass_steps=2), hr_files)
    assert picture(model.images[0]).size == (128, 128)
    assert model.images[0] != lanczos.images[0]
    assert "Hires upscaler: 2x-TinyCompact" in picture(model.images[0]).info["parameters"]
    other = engine.run("txt2img", hires(hr_checkpoint_name="tiny-other [abc]"), hr_files)
    same = engine.run("txt2img", hires(), hr_files)
    assert other.images[0] != same.images[0]
    assert "Hires checkpoint: tiny-other" in picture(other.images[0]).info["parameters"]
    with pytest.raises(
        EngineError, match=r"hr_upscaler names '4x-UltraSharp'.*Upscaler models are: 2x-TinyESRGAN, 2x-TinyCompact"
    ):
        engine.run("txt2img", hires(hr_upscaler="4x-UltraSharp"), hr_files)
    with pytest.raises(EngineError, match="hr_checkpoint_name names 'sdxl-base'"):
        engine.run("txt2img", hires(hr_checkpoint_name="sdxl-base"), hr_files)


def test_denoising_strength_0_returns_the_upscaled_first_pass(engine, hr_files, monkeypatch) -> None:
    calls: list[int] = []
    original = ksampling.sample

    def spy(**arguments):
        calls.append(len(arguments["sigmas"]))
        return original(**arguments)

    monkeypatch.setattr(ksampling, "sample", spy)
    result = engine.run("txt2img", hires(denoising_strength=0.0, hr_upscaler="Lanczos"), hr_files)
    assert calls == [5]  # the first pass only: nothing is left to denoise at strength 0
    assert picture(result.images[0]).size == (128, 128)


def test_the_memory_estimate_covers_the_second_pass(models) -> None:
    from inferences.engine.request.identify import header_entries

    shape = ModelShape.of("tiny", header_entries(models["checkpoint"].path))
    request = parse_request("txt2img", hires(width=512, height=512, hr_scale=2), LIMITS)
    assert estimate(shape, *request.largest_size, 1, 4).total == estimate(shape, 1024, 1024, 1, 4).total
    assert estimate(shape, *request.largest_size, 1, 4).total > estimate(shape, 512, 512, 1, 4).total


def test_prompt_editing_in_the_hires_pass_counts_after_the_first_pass(engine, hr_files, monkeypatch) -> None:
    """Issue 30.2. A1111 schedules the second pass's conditioning with get_learned_conditioning_prompt_schedules(
    prompts, base_steps=firstpass_steps, hires_steps=total_steps) (processing.py, calculate_hr_conds): with 6 + 4
    steps, `[cat:dog:0.5]` is "dog" for the whole second pass and `[cat:dog:8]` switches after its step 2; the first
    pass keeps its own count (cat for 3 steps, then dog; cat to the end)."""
    from inferences.engine import generate as generate_module

    texts: list[tuple[int, str]] = []
    real = generate_module.prompt_schedule

    def recorded(prompt: str, steps: int, first_pass_steps: int | None = None):
        schedule = real(prompt, steps, first_pass_steps)
        if prompt.startswith("a [cat"):
            texts.append(schedule)
        return schedule

    monkeypatch.setattr(generate_module, "prompt_schedule", recorded)
    hires = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 4, "steps": 6}
    engine.run("txt2img", txt2img(prompt="a [cat:dog:0.5]", **hires), hr_files)
    engine.run("txt2img", txt2img(prompt="a [cat:dog:8]", **hires), hr_files)
    assert texts == [
        ((3, "a cat"), (6, "a dog")), ((4, "a dog"),),  # first pass, second pass
        ((6, "a cat"),), ((2, "a cat"), (4, "a dog")),
    ]  # fmt: skip
