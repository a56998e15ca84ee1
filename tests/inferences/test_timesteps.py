"""A1111's DDIM, PLMS and LCM on the engine's loop (issue 30.9). Expected values are worked out from A1111 v1.10.1:
sd_samplers_timesteps.py (get_timesteps: range(0, 1000, 1000 // steps) + 1; sample_img2img), its _impl (ddim, plms)
and sd_samplers_lcm.py (LCMCompVisDenoiser over the 50 original timesteps, get_sigmas, sigma_to_t)."""

import numpy as np
import pytest
import torch

from inferences.engine.request.options import JobFiles
from inferences.engine.sampling import ksampling
from inferences.engine.sampling.timesteps import get_timesteps, sample_ddim, sample_plms

from .conftest import txt2img

ALPHAS = ksampling.alphas_cumprod({"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"})


class Recorder:
    def __init__(self, eps: float = 0.0) -> None:
        self.times: list[int] = []
        self.eps = eps

    def __call__(self, x, t):
        self.times.append(float(t[0]))
        return torch.full_like(x, self.eps)


def test_ddim_walks_a1111s_timesteps_and_ends_at_the_first():
    from inferences.engine.request.samplers import SAMPLERS
    from inferences.engine.sampling.timesteps import TIMESTEP_SAMPLERS

    # the sampler table (read without torch) and the functions that run them name the same samplers
    assert {sampler.function for sampler in SAMPLERS.values() if sampler.timesteps} == set(TIMESTEP_SAMPLERS)
    timesteps = get_timesteps(20)
    assert timesteps.tolist() == list(range(1, 1000, 50))
    model, x = Recorder(), torch.ones(1, 4, 2, 2)
    out = sample_ddim(model, x, timesteps, ALPHAS, callback=lambda _: None, noise=lambda: torch.zeros_like(x))
    assert model.times == list(range(951, 0, -50))[:-1]  # 19 evaluations: 951 ... 51
    # with no predicted noise each step is x * sqrt(a_prev / a_t): the product telescopes to sqrt(a(1) / a(951))
    expected = float(torch.sqrt(ALPHAS[1].double() / ALPHAS[951].double()))
    assert out.flatten()[0].item() == pytest.approx(expected, rel=1e-5)


def test_plms_takes_a_second_evaluation_on_its_first_step():
    model, x = Recorder(0.1), torch.ones(1, 4, 2, 2)
    sample_plms(model, x, get_timesteps(10), ALPHAS, callback=lambda _: None, noise=lambda: torch.zeros_like(x))
    assert model.times == [901, 801, 801, 701, 601, 501, 401, 301, 201, 101]  # the improved Euler's look-ahead


def test_lcm_walks_its_distilled_timesteps(engine, files):
    from inferences.engine.sampling.timesteps import lcm_denoiser

    base = ksampling.denoiser(torch.nn.Linear(1, 1), {"beta_start": 0.00085, "beta_end": 0.012})
    lcm = lcm_denoiser(base, *ksampling.k_diffusion())
    sigmas = ksampling.sigmas_for(base, "LCM", None, 4)
    assert lcm.sigma_to_t(sigmas[:-1]).tolist() == [999, 679, 339, 19] and sigmas[-1] == 0


@pytest.mark.parametrize("sampler", ["DDIM", "PLMS", "UniPC", "LCM"])
def test_a1111s_own_samplers_take_prompt_editing_controlnet_hires_and_img2img(engine, models, sampler):
    files = JobFiles(checkpoint=models["checkpoint"])
    edited = engine.run("txt2img", txt2img(prompt="a [cat:dog:0.5]", sampler_name=sampler, steps=4, seed=3), files)
    plain = engine.run("txt2img", txt2img(prompt="a cat", sampler_name=sampler, steps=4, seed=3), files)
    assert edited.ignored == [] and edited.images != plain.images
    hires = engine.run("txt2img", txt2img(sampler_name=sampler, steps=4, enable_hr=True, hr_scale=2,
                                          denoising_strength=0.5, hr_upscaler="Latent"), files)  # fmt: skip
    assert hires.ignored == [] and hires.pictures[0][0].size == (128, 128)
    from .conftest import png_b64, red_disc

    picture = engine.run("img2img", {**txt2img(sampler_name=sampler, steps=6), "init_images": [png_b64(red_disc((64, 64)))],
                                     "denoising_strength": 0.5}, files)  # fmt: skip
    assert picture.ignored == []


def test_ddim_writes_eta_ddim_and_batches_to_the_same_pictures(engine, models):
    from inferences.engine.runner import Job

    files = JobFiles(checkpoint=models["checkpoint"])
    result = engine.run("txt2img", txt2img(sampler_name="DDIM", steps=4, eta=0.5, seed=2), files)
    assert "Eta DDIM: 0.5" in result.info["infotexts"][0] and "Schedule type: Automatic" in result.info["infotexts"][0]
    payloads = [txt2img(sampler_name="DDIM", steps=4, seed=seed, prompt=f"a boat {seed}") for seed in (5, 6)]
    together = engine.run_batch([Job("txt2img", payload, files) for payload in payloads])
    for payload, batched in zip(payloads, together, strict=True):
        assert batched.timings["batch_jobs"] == 2.0
        assert np.array_equal(
            np.asarray(batched.pictures[0][0]), np.asarray(engine.run("txt2img", payload, files).pictures[0][0])
        )


def test_unipc_evaluates_once_a_step_from_a1111s_times():
    """uni_pc.UniPC.sample (multistep, order 3, lower order final, time uniform from 1 to 1/1000 over
    len(timesteps) steps) with UniPCCFG's model input time (t - 1/1000) x 1000: 20 steps, 20 evaluations, the
    first at 999, the others at 999 - k x 999/20 (the times, k = 1..19, and no evaluation after the last)."""
    from inferences.engine.sampling.timesteps import sample_unipc

    model, x = Recorder(0.05), torch.ones(1, 4, 2, 2)
    seen = []
    sample_unipc(model, x, get_timesteps(20), ALPHAS, callback=lambda state: seen.append(state["i"]),
                 noise=lambda: torch.zeros_like(x))  # fmt: skip
    expected = [(t - 1 / 1000) * 1000 for t in torch.linspace(1.0, 1 / 1000, 21).tolist()[:20]]
    assert model.times == pytest.approx(expected, abs=1e-3) and model.times[0] == pytest.approx(999)
    assert seen == list(range(20))


def test_unipc_with_no_predicted_noise_returns_the_clean_latents():
    """With the noise prediction 0 the solution is x_t = alpha(t) x0 with x0 = x / alpha(1), the data prediction x0
    at every step (every difference in multistep_uni_pc_bh_update is 0), so UniPC ends at alpha(1/1000) x0."""
    from inferences.engine.sampling.timesteps import _NoiseScheduleVP, sample_unipc

    x = torch.ones(1, 4, 2, 2)
    out = sample_unipc(Recorder(0.0), x, get_timesteps(10), ALPHAS, callback=lambda _: None,
                       noise=lambda: torch.zeros_like(x))  # fmt: skip
    schedule = _NoiseScheduleVP(ALPHAS)
    expected = x * schedule.alpha(torch.tensor([1 / 1000])) / schedule.alpha(torch.tensor([1.0]))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
