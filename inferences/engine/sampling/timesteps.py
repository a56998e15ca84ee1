"""A1111's own samplers over timesteps and LCM (issue 30.9), on the same loop as k-diffusion's (so they batch their
CFG, take prompt editing, ControlNet, inpainting and the hires pass): modules/sd_samplers_timesteps.py and
sd_samplers_timesteps_impl.py (DDIM, PLMS), sd_samplers_lcm.py (LCMCompVisDenoiser, sample_lcm).

The timestep samplers walk A1111's `get_timesteps`: range(0, 1000, 1000 // steps) + 1, from the last down, each step
one evaluation of the guided noise prediction (PLMS: two on its first), the latents as the model sees them (no sigma
scaling); DDIM ends at the first timestep's alpha, ᾱ(t=1), after len(timesteps) - 1 evaluations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, timesteps) -> guided noise prediction
Callback = Callable[[dict[str, Any]], None]


def get_timesteps(steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A1111's CompVisSampler.get_timesteps (no discarded sigma for these samplers)."""
    return torch.clip(torch.asarray(list(range(0, 1000, 1000 // steps)), device=device) + 1, 0, 999)


def _schedule(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ᾱ at each timestep, at the one before it (float64, as A1111's `float64(x)`), and √(1 - ᾱ)."""
    alphas = alphas_cumprod[timesteps]
    alphas_prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    return alphas, alphas_prev, torch.sqrt(1 - alphas)


@torch.no_grad()
def sample_ddim(
    model: Model, x: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, *, callback: Callback,
    noise: Callable[[], torch.Tensor], eta: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    """A1111's `ddim`: x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s noise, s from `eta` (Eta DDIM)."""
    alphas, alphas_prev, sqrt_one_minus = _schedule(alphas_cumprod, timesteps)
    prev, now = alphas_prev.cpu().numpy(), alphas.cpu()
    sigmas = eta * np.sqrt((1 - prev) / (1 - now) * (1 - now / prev))
    s_in, s_x = x.new_ones((x.shape[0],)), x.new_ones((x.shape[0], 1, 1, 1))
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].item() * s_in)
        a_t, a_prev = alphas[index].item() * s_x, alphas_prev[index].item() * s_x
        sigma_t, sqrt_one_minus_at = sigmas[index].item() * s_x, sqrt_one_minus[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t**2).sqrt() * e_t
        x = a_prev.sqrt() * pred_x0 + dir_xt + (sigma_t * noise() if eta else 0.0)
        callback({"x": x, "i": i, "sigma": 0, "sigma_hat": 0, "denoised": pred_x0})
    return x


@torch.no_grad()
def sample_plms(
    model: Model, x: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, *, callback: Callback,
    noise: Callable[[], torch.Tensor], eta: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    """A1111's `plms`: pseudo linear multistep (a pseudo improved Euler first step, then Adams-Bashforth of orders 2
    to 4 over the last noise predictions)."""
    alphas, alphas_prev, sqrt_one_minus = _schedule(alphas_cumprod, timesteps)
    s_in, s_x = x.new_ones([x.shape[0]]), x.new_ones((x.shape[0], 1, 1, 1))
    old_eps: list[torch.Tensor] = []

    def step(e_t: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        a_t, a_prev = alphas[index].item() * s_x, alphas_prev[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus[index].item() * s_x * e_t) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e_t, pred_x0

    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        t, t_next = timesteps[index].item() * s_in, timesteps[max(index - 1, 0)].item() * s_in
        e_t = model(x, t)
        if not old_eps:
            x_prev, _ = step(e_t, index)
            e_prime = (e_t + model(x_prev, t_next)) / 2
        elif len(old_eps) == 1:
            e_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x_prev, pred_x0 = step(e_prime, index)
        old_eps = [*old_eps, e_t][-3:]
        x = x_prev
        callback({"x": x, "i": i, "sigma": 0, "sigma_hat": 0, "denoised": pred_x0})
    return x


TIMESTEP_SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"ddim": sample_ddim, "plms": sample_plms}


def _dims(value: torch.Tensor, ndim: int) -> torch.Tensor:
    return value[(...,) + (None,) * (ndim - value.ndim)]


def lcm_denoiser(base: Any, sampling: Any, external: Any) -> Any:
    """A1111's LCMCompVisDenoiser over the same noise prediction as `base` (a k-diffusion DiscreteEpsDDPMDenoiser;
    `sampling` and `external`: k-diffusion's modules, ksampling.k_diffusion): the 50 timesteps LCM was distilled on
    (999, 979, ... 19), its own t <-> sigma, and LCM's skip / out scalings."""

    class LCMDenoiser(external.DiscreteEpsDDPMDenoiser):  # type: ignore[misc,name-defined]
        def __init__(self, inner: Any, alphas_cumprod: torch.Tensor) -> None:
            timesteps, original = 1000, 50
            self.skip_steps = timesteps // original
            valid = torch.zeros(original, dtype=torch.float32, device=alphas_cumprod.device)
            for k in range(original):
                valid[original - 1 - k] = alphas_cumprod[timesteps - 1 - k * self.skip_steps]
            super().__init__(inner, valid, quantize=None)

        def get_sigmas(self, n: int | None = None) -> torch.Tensor:
            if n is None:
                return sampling.append_zero(self.sigmas.flip(0))
            start, end = self.sigma_to_t(self.sigma_max), self.sigma_to_t(self.sigma_min)
            return sampling.append_zero(self.t_to_sigma(torch.linspace(start, end, n, device=self.sigmas.device)))

        def sigma_to_t(self, sigma: torch.Tensor, quantize: Any = None) -> torch.Tensor:
            dists = sigma.log() - self.log_sigmas[:, None]
            return dists.abs().argmin(dim=0).view(sigma.shape) * self.skip_steps + (self.skip_steps - 1)

        def t_to_sigma(self, timestep: torch.Tensor) -> torch.Tensor:
            t = torch.clamp(
                ((timestep - (self.skip_steps - 1)) / self.skip_steps).float(), min=0, max=len(self.sigmas) - 1
            )
            return super().t_to_sigma(t)

        def forward(self, input: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            c_out, c_in = (_dims(value, input.ndim) for value in self.get_scalings(sigma))
            eps = self.inner_model(input * c_in, self.sigma_to_t(sigma), **kwargs)
            scaled = _dims(self.sigma_to_t(sigma), input.ndim) * 10.0
            c_skip = 0.25 / (scaled**2 + 0.25)  # sigma_data 0.5
            c_out_lcm = scaled / (scaled**2 + 0.25) ** 0.5
            return c_out_lcm * (input + eps * c_out) + c_skip * input

    if not hasattr(base, "esd_lcm"):
        base.esd_lcm = LCMDenoiser(base.inner_model, base.esd_alphas_cumprod)
    return base.esd_lcm


@torch.no_grad()
def sample_lcm(
    model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None, disable: bool | None = None, noise_sampler: Any = None,
) -> torch.Tensor:  # fmt: skip
    """A1111's sample_lcm: each step the model's clean estimate, noised again to the next sigma."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **(extra_args or {}))
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x
