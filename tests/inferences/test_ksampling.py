"""A1111's samplers through k-diffusion: the sigma schedules against values computed independently from the model's
alphas_cumprod, A1111's CPU noise, and images that reproduce."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from inferences.engine.models.loading import load_model
from inferences.engine.request.options import EngineOptions, JobFiles
from inferences.engine.request.samplers import resolve_sampler
from inferences.engine.sampling import ksampling

from .conftest import txt2img


@pytest.fixture(scope="module")
def tiny(models):
    model = load_model(models["checkpoint"], None, EngineOptions())
    return model, ksampling.denoiser(model.base.unet, model.base.scheduler.config)


def model_sigmas(config) -> np.ndarray:
    """The checkpoint's 1000 sigmas, from its betas as LDM computes them: independent of the engine's code."""
    betas = np.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, config["num_train_timesteps"]) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas).astype(np.float32)
    return ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5


def uniform_schedule(sigmas: np.ndarray, steps: int) -> np.ndarray:
    """k-diffusion's DiscreteSchedule.get_sigmas: t spaced over 999..0, log-sigma interpolated, then a final 0."""
    t = np.linspace(len(sigmas) - 1, 0, steps)
    return np.append(np.exp(np.interp(t, np.arange(len(sigmas)), np.log(sigmas))), 0.0)


def test_sigma_schedules_are_a1111s_for_20_steps(tiny):
    model, denoiser = tiny
    config = model.base.scheduler.config
    assert config["beta_schedule"] == "scaled_linear" and config["num_train_timesteps"] == 1000
    sigmas = model_sigmas(config)
    sampling, _ = ksampling.k_diffusion()
    karras = sampling.get_sigmas_karras(n=20, sigma_min=float(sigmas[0]), sigma_max=float(sigmas[-1])).numpy()
    expected = {"Euler a": uniform_schedule(sigmas, 20), "DPM++ 2M Karras": karras, "DPM++ SDE Karras": karras}
    for payload_name, schedule in expected.items():
        name, asked = resolve_sampler(payload_name)
        ours = ksampling.sigmas_for(denoiser, name, asked, 20).numpy()
        assert ours.shape == (21,) and ours[-1] == 0.0, payload_name
        np.testing.assert_allclose(ours, schedule, rtol=1e-5, err_msg=payload_name)
        assert ours[0] == pytest.approx(14.6146, abs=1e-3), payload_name  # SD 1.5's first sigma, not diffusers' 11.0
    # diffusers' "leading" timesteps (SD 1.5's scheduler config) started lower: the reason for this module
    leading_first_t = (1000 // 20) * 19 + 1
    assert float(sigmas[leading_first_t]) == pytest.approx(11.0, abs=0.2)


def test_discarding_the_penultimate_sigma_and_the_other_schedules(tiny):
    _, denoiser = tiny
    dpm2 = ksampling.sigmas_for(denoiser, "DPM2", None, 10)
    assert len(dpm2) == 11 and dpm2[-1] == 0  # 11 Karras sigmas + 0, the next-to-last dropped
    for schedule in ("uniform", "karras", "exponential", "polyexponential", "sgm_uniform"):
        sigmas = ksampling.sigmas_for(denoiser, "Euler", schedule, 8)
        assert len(sigmas) == 9 and sigmas[-1] == 0 and bool((sigmas[:-1][:-1] > sigmas[:-1][1:]).all()), schedule
        assert sigmas[0] == pytest.approx(14.6146, abs=1e-2), schedule


def test_noise_is_a1111s_cpu_noise_per_image():
    noise = ksampling.ImageNoise((4, 8, 8), [1234, 1235], torch.device("cpu"), noise_seed_delta=31337)
    first, second = noise.next(), noise.next()
    for index, seed in enumerate((1234, 1235)):
        generator = torch.Generator("cpu").manual_seed(seed)
        assert torch.equal(first[index], torch.randn((4, 8, 8), generator=generator))
        reseeded = torch.Generator("cpu").manual_seed(seed + 31337)  # ENSD: the ancestral noise's own seed
        assert torch.equal(second[index], torch.randn((4, 8, 8), generator=reseeded))
    plain = ksampling.ImageNoise((4, 8, 8), [1234], torch.device("cpu"))
    plain.next()
    generator = torch.Generator("cpu").manual_seed(1234)
    torch.randn((4, 8, 8), generator=generator)
    assert torch.equal(plain.next()[0], torch.randn((4, 8, 8), generator=generator))  # the same stream goes on


def png_pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png))).astype(int)


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ SDE Karras", "DPM++ 2M Karras"])
def test_one_seed_gives_the_same_image_run_to_run_and_another_seed_another(engine, models, sampler):
    files = JobFiles(checkpoint=models["checkpoint"])
    first = engine.run("txt2img", txt2img(sampler_name=sampler, steps=6, seed=77), files).images[0]
    again = engine.run("txt2img", txt2img(sampler_name=sampler, steps=6, seed=77), files).images[0]
    other = engine.run("txt2img", txt2img(sampler_name=sampler, steps=6, seed=78), files).images[0]
    assert first == again  # identical PNG bytes
    assert np.abs(png_pixels(first) - png_pixels(other)).max() > 0


def test_image_k_of_a_batch_is_the_image_of_seed_plus_k(engine, models):
    files = JobFiles(checkpoint=models["checkpoint"])
    batch = engine.run("txt2img", txt2img(sampler_name="Euler a", steps=5, seed=500, batch_size=3), files).images
    alone = engine.run("txt2img", txt2img(sampler_name="Euler a", steps=5, seed=502), files).images[0]
    # Per-image generators, as A1111's, and a batch-invariant UNet on CPU (invariance.py): exactly the same picture
    assert np.array_equal(png_pixels(batch[2]), png_pixels(alone))


def test_the_schedule_type_is_written_as_a1111_writes_it(engine, models):
    files = JobFiles(checkpoint=models["checkpoint"])
    result = engine.run("txt2img", txt2img(sampler_name="DPM++ 2M Karras", steps=4), files)
    text = Image.open(io.BytesIO(result.images[0])).text["parameters"]
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in text
    plain = engine.run("txt2img", txt2img(sampler_name="Euler a", steps=4), files)
    # Euler a has no schedule of its own: A1111 writes the payload's p.scheduler, "Automatic" when none was sent
    assert "Sampler: Euler a, Schedule type: Automatic," in Image.open(io.BytesIO(plain.images[0])).text["parameters"]
    assert plain.ignored == [] and result.ignored == []


def conditioning_calls(engine, files, monkeypatch, **payload) -> list[torch.Tensor]:
    """The text conditioning the UNet saw at each model evaluation (first image of the batch, cond half)."""
    seen: list[torch.Tensor] = []
    original = ksampling.CFGDenoiser.__call__

    def spy(self, x, sigma, **kwargs):
        seen.append(ksampling._in_force(self.conditioning.cond, self.step).hidden[0].clone())
        return original(self, x, sigma, **kwargs)

    monkeypatch.setattr(ksampling.CFGDenoiser, "__call__", spy)
    result = engine.run("txt2img", txt2img(**payload), files)
    assert result.ignored == []
    return seen


def test_prompt_editing_switches_the_conditioning_at_the_right_step(engine, models, monkeypatch):
    files = JobFiles(checkpoint=models["checkpoint"])
    calls = conditioning_calls(engine, files, monkeypatch, prompt="a [cat:dog:4] photo", steps=10, sampler_name="Euler")
    assert len(calls) == 10
    # A1111 counts from 0 and a text is in force up to and including its step: steps 0..4 "cat", 5..9 "dog"
    assert all(torch.equal(calls[0], calls[i]) for i in range(5))
    assert all(torch.equal(calls[5], calls[i]) for i in range(5, 10))
    assert not torch.equal(calls[4], calls[5])
    fraction = conditioning_calls(
        engine, files, monkeypatch, prompt="a [cat:dog:0.3] photo", steps=10, sampler_name="Euler"
    )
    assert torch.equal(fraction[3], calls[0]) and torch.equal(fraction[4], calls[9])  # 0.3 x 10 = step 3
    alternating = conditioning_calls(
        engine, files, monkeypatch, prompt="a [cat|dog] photo", steps=4, sampler_name="Euler"
    )
    assert torch.equal(alternating[1], calls[0]) and torch.equal(alternating[2], calls[9])  # step 1: cat, 2: dog
    assert torch.equal(alternating[3], calls[0])


def test_second_order_samplers_schedule_over_their_model_evaluations(engine, models, monkeypatch):
    files = JobFiles(checkpoint=models["checkpoint"])
    calls = conditioning_calls(engine, files, monkeypatch, prompt="a [cat:dog:0.5] photo", steps=4, sampler_name="Heun")
    assert len(calls) == 7  # Heun: two evaluations a step, one on the last
    assert torch.equal(calls[0], calls[4]) and not torch.equal(calls[4], calls[5])  # half of 2 x 4 = 4


def test_variation_seeds_mix_noises_as_a1111_does(engine, models):
    files = JobFiles(checkpoint=models["checkpoint"])
    base = txt2img(sampler_name="Euler a", steps=5, seed=10, subseed=99)
    plain = png_pixels(engine.run("txt2img", {**base, "subseed_strength": 0}, files).images[0])
    varied = engine.run("txt2img", {**base, "subseed_strength": 0.4}, files)
    other = png_pixels(engine.run("txt2img", {**base, "subseed": 100, "subseed_strength": 0.4}, files).images[0])
    assert (
        np.abs(png_pixels(varied.images[0]) - plain).max() > 0
        and np.abs(png_pixels(varied.images[0]) - other).max() > 0
    )
    text = Image.open(io.BytesIO(varied.images[0])).text["parameters"]
    assert "Variation seed: 99, Variation seed strength: 0.4" in text
    assert varied.info["all_subseeds"] == [99] and varied.ignored == []
    # strength 1 starts from the subseed's own noise; with a sampler that adds none later, that is seed 99's image
    # (ancestral samplers go on drawing from the seed's generator, as in A1111)
    euler = {**base, "sampler_name": "Euler"}
    full = png_pixels(engine.run("txt2img", {**euler, "subseed_strength": 1.0}, files).images[0])
    assert np.abs(full - png_pixels(engine.run("txt2img", {**euler, "seed": 99}, files).images[0])).max() <= 1


def test_noise_with_seed_resize_keeps_the_seeds_middle():
    small = ksampling.ImageNoise((4, 8, 8), [7], torch.device("cpu")).next()[0]
    resized = ksampling.ImageNoise((4, 12, 12), [7], torch.device("cpu"), resize_from=(64, 64)).next()[0]
    assert torch.equal(resized[:, 2:10, 2:10], small)  # the 8x8 noise of seed 7, centred in 12x12
    cropped = ksampling.ImageNoise((4, 4, 4), [7], torch.device("cpu"), resize_from=(64, 64)).next()[0]
    assert torch.equal(cropped, small[:, 2:6, 2:6])


def test_restart_adds_its_restart_segment_from_20_steps(engine, models, monkeypatch):
    files = JobFiles(checkpoint=models["checkpoint"])
    calls = conditioning_calls(engine, files, monkeypatch, sampler_name="Restart", steps=20, width=64, height=64)
    # 20 steps: 11 Karras steps + a 9-step restart segment, each Heun (two evaluations) but the last one
    assert len(calls) == 2 * (11 + 9) - 1
    short = conditioning_calls(engine, files, monkeypatch, sampler_name="Restart", steps=6, width=64, height=64)
    assert len(short) == 2 * 6 - 1  # under 20 steps: plain Heun down the schedule


def test_pictures_are_8_bit_as_a1111_truncates_them() -> None:
    """Issue 30.13. A1111 (modules/processing.py): `torch.clamp((x + 1.0) / 2.0, 0, 1)`, then
    `255. * np.moveaxis(x.cpu().numpy(), 0, 2)` and `.astype(np.uint8)`: truncation. Values chosen where rounding
    (diffusers' postprocess) gives one level more: 255 * (x + 1) / 2 = 127.6, 0.9, 254.99, and the clamp's ends."""
    from inferences.engine.generate import pictures

    levels = torch.tensor([127.6, 0.9, 254.99, -5.0, 300.0, 128.0], dtype=torch.float32)
    decoded = (levels / 255.0 * 2.0 - 1.0).reshape(1, 1, 2, 3).repeat(1, 3, 1, 1)
    [picture] = pictures(decoded)
    assert np.asarray(picture)[..., 0].tolist() == [[127, 0, 254], [0, 255, 128]]


def test_variation_seeds_keep_the_seed_and_count_the_subseeds_as_a1111() -> None:
    """Issue 30.11. A1111 (modules/processing.py, process_images_inner): `all_seeds = [int(seed) + (x if
    p.subseed_strength == 0 else 0) ...]`, `all_subseeds = [int(subseed) + x ...]`."""
    from inferences.engine.generate import draw_seeds
    from inferences.engine.request.limits import Limits
    from inferences.engine.request.payload import parse_request

    varied = parse_request("txt2img", txt2img(seed=1234, subseed=99, subseed_strength=0.5, batch_size=3), Limits())
    assert draw_seeds(varied) == ([1234, 1234, 1234], [99, 100, 101])
    plain = parse_request("txt2img", txt2img(seed=1234, subseed=99, batch_size=3), Limits())
    assert draw_seeds(plain) == ([1234, 1235, 1236], [99, 100, 101])


def test_dpm_fast_and_adaptive_take_a1111s_eta_and_range(engine, files, monkeypatch) -> None:
    """Issue 30.8. A1111 (modules/sd_samplers_kdiffusion.py, KDiffusionSampler.sample): for a sampler with
    `sigma_min` in its signature it passes `self.model_wrap.sigmas[0]` and `[-1]` (the model's whole range) and
    `n = steps`; `initialize` passes `eta = p.eta` or else `opts.eta_ancestral`, whose default is 1.0. k-diffusion's
    own default eta of DPM fast and adaptive is 0."""
    import functools

    from inferences.engine.sampling.ksampling import k_diffusion

    sampling, _ = k_diffusion()
    seen: list[dict] = []
    for name in ("sample_dpm_fast", "sample_dpm_adaptive"):
        real = getattr(sampling, name)

        def spy(*args, real=real, **kwargs):
            seen.append({key: kwargs.get(key) for key in ("sigma_min", "sigma_max", "n", "eta")})
            return real(*args, **kwargs)

        monkeypatch.setattr(sampling, name, functools.wraps(real)(spy))
    denoisers: list = []
    real_sample = ksampling.sample

    def sample(**kwargs):
        denoisers.append(kwargs["model_denoiser"])
        return real_sample(**kwargs)

    monkeypatch.setattr(ksampling, "sample", sample)
    engine.run("txt2img", txt2img(sampler_name="DPM fast", steps=4), files)
    engine.run("txt2img", txt2img(sampler_name="DPM adaptive", steps=4, eta=0.25), files)
    model_range = (denoisers[0].sigmas[0].item(), denoisers[0].sigmas[-1].item())
    assert model_range[0] < 0.05 and model_range[1] > 14  # the model's table, not the 4-step schedule's ends
    fast, adaptive = seen
    assert (fast["sigma_min"], fast["sigma_max"], fast["n"], fast["eta"]) == (*model_range, 4, 1.0)
    assert (adaptive["sigma_min"], adaptive["sigma_max"], adaptive["eta"]) == (*model_range, 0.25)


@pytest.mark.parametrize("steps", [7, 10, 20])
def test_the_schedule_types_a1111_added_are_its_own(tiny, steps):
    """Issue 30.10. Expected values computed here with numpy from the model's sigma table (model_sigmas, from its
    betas), transcribing A1111 1.10's modules/sd_schedulers.py: kl_optimal (tan of a walk between the atans, n + 1
    values, no final 0), get_align_your_steps_sigmas (NVIDIA's SD 1.5 table, log-linear interpolation for n != 10),
    simple_scheduler (every len/n-th sigma from the top), normal_scheduler (n timesteps from sigma_max's to
    sigma_min's, which on a discrete model is k-diffusion's uniform schedule), ddim_scheduler (sigmas 1, 1 + 1000 // n,
    ..., reversed) and beta_scheduler (quantiles of Beta(0.6, 0.6), A1111's default alpha and beta)."""
    from scipy import stats

    model, denoiser = tiny
    table = model_sigmas(model.base.scheduler.config)
    low, high = float(table[0]), float(table[-1])
    n = steps
    ays = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
    if n != len(ays):
        xs, ys = np.linspace(0, 1, len(ays)), np.log(ays[::-1])
        ays = list(np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1])
    i = np.arange(n + 1)
    expected = {
        "KL Optimal": np.tan(i / n * np.arctan(low) + (1 - i / n) * np.arctan(high)),
        "Align Your Steps": np.append(ays, 0.0),
        "Simple": np.append([table[-(1 + int(x * len(table) / n))] for x in range(n)], 0.0),
        "Normal": uniform_schedule(table, n),
        "DDIM": np.append([table[x] for x in range(1, len(table), len(table) // n)][::-1], 0.0),
        "Beta": np.append([low + q * (high - low) for q in stats.beta.ppf(1 - np.linspace(0, 1, n), 0.6, 0.6)], 0.0),
    }
    for label, values in expected.items():
        name, schedule = resolve_sampler("Euler", label)
        ours = ksampling.sigmas_for(denoiser, name, schedule, n).numpy()
        np.testing.assert_allclose(ours, values, rtol=2e-4, err_msg=label)


def test_the_sde_samplers_brownian_tree_spans_the_whole_schedule(engine, files, tiny, monkeypatch) -> None:
    """Issue 30.7. A1111 (modules/sd_samplers_kdiffusion.py, sample_img2img): `sigmas = self.get_sigmas(p, steps)`,
    the pass runs `sigma_sched = sigmas[steps - t_enc - 1:]`, but `create_noise_sampler(x, sigmas, p)` is given the
    unsliced `sigmas`, so its BrownianTreeNoiseSampler spans `sigmas[sigmas > 0].min()` to `sigmas.max()` of the
    whole schedule. The hires pass is sample_img2img with steps = hr_second_pass_steps: a schedule of
    int(steps / denoising_strength) sigmas (setup_img2img_steps), of which the last `steps` run."""
    from .conftest import png_b64, red_disc

    _, denoiser = tiny
    sampling, _ = ksampling.k_diffusion()
    spans: list[tuple[float, float]] = []
    original = sampling.BrownianTreeNoiseSampler

    class Recorder(original):  # type: ignore[misc, valid-type]
        def __init__(self, x, sigma_min, sigma_max, seed=None):
            spans.append((float(sigma_min), float(sigma_max)))
            super().__init__(x, sigma_min, sigma_max, seed=seed)

    monkeypatch.setattr(sampling, "BrownianTreeNoiseSampler", Recorder)

    def span(steps: int) -> tuple[float, float]:
        full = ksampling.sigmas_for(denoiser, "DPM++ 2M SDE", None, steps)
        return float(full[full > 0].min()), float(full.max())

    sde = {"sampler_name": "DPM++ 2M SDE", "denoising_strength": 0.5}
    engine.run("img2img", txt2img(init_images=[png_b64(red_disc((64, 64)))], steps=10, **sde), files)
    hires = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 4}
    engine.run("txt2img", txt2img(steps=6, **hires, **sde), files)
    assert spans == [pytest.approx(span(10)), pytest.approx(span(6)), pytest.approx(span(8))]
    truncated = ksampling.sigmas_for(denoiser, "DPM++ 2M SDE", None, 10)[10 - 5 - 1 :]
    assert spans[0][1] > float(truncated.max())  # what the tree spanned before: the run's own tail


def test_the_noise_source_is_a1111s_gpu_on_cuda_and_the_cpu_elsewhere(engine, files):
    """Issue 30.12. A1111's rng.py: its default `randn_source: GPU` draws with generators on the device
    (`create_generator`: torch.Generator(devices.device)), its CPU source on the CPU; on a machine without CUDA the
    GPU source draws on the CPU too. A CPU worker says so when the payload asked for GPU noise; the infotext labels
    CPU-drawn noise `RNG: CPU` (A1111 writes RNG for a non-default source) and leaves RNG out for GPU noise."""
    import torch

    from inferences.engine.errors import EngineError
    from inferences.engine.request.limits import Limits
    from inferences.engine.request.payload import parse_request
    from inferences.engine.sampling.ksampling import noise_device

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert noise_device(cuda, True) == cuda and noise_device(cuda, False) == cpu and noise_device(cpu, True) == cpu
    assert parse_request("txt2img", txt2img(), Limits()).noise_source == "GPU"  # A1111's default
    with pytest.raises(EngineError, match="randn_source must be GPU, CPU or NV"):
        parse_request("txt2img", txt2img(override_settings={"randn_source": "gpu"}), Limits())

    default = engine.run("txt2img", txt2img(steps=3, seed=7), files)
    asked = engine.run("txt2img", txt2img(steps=3, seed=7, override_settings={"randn_source": "GPU"}), files)
    on_cpu = engine.run("txt2img", txt2img(steps=3, seed=7, override_settings={"randn_source": "CPU"}), files)
    assert default.images == asked.images == on_cpu.images  # on a CPU worker every source draws on the CPU
    assert default.ignored == on_cpu.ignored == []
    assert asked.ignored == [
        "override_settings.randn_source GPU (this worker has no CUDA device: the noise was drawn on the CPU, as A1111 "
        "draws it on a machine without one)"
    ]
    assert all("RNG: CPU" in result.info["infotexts"][0] for result in (default, asked, on_cpu))
