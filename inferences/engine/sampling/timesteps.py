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


def _interpolate(x: torch.Tensor, xp: torch.Tensor, yp: torch.Tensor) -> torch.Tensor:
    """uni_pc.interpolate_fn: piecewise linear through (xp, yp), its outer segments extended beyond them."""
    index = torch.clamp(torch.searchsorted(xp, x) - 1, 0, len(xp) - 2)
    x0, x1, y0, y1 = xp[index], xp[index + 1], yp[index], yp[index + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


class _NoiseScheduleVP:
    """uni_pc.NoiseScheduleVP('discrete'): the model's ᾱ as a function of continuous time t in (0, 1]."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        self.total = len(alphas_cumprod)
        self.log_alphas = 0.5 * torch.log(alphas_cumprod)
        self.times = torch.linspace(0.0, 1.0, self.total + 1)[1:].to(alphas_cumprod.device)

    def log_mean(self, t: torch.Tensor) -> torch.Tensor:
        return _interpolate(t, self.times.to(t.device), self.log_alphas.to(t.device))

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_mean(t))

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_mean(t)))

    def lam(self, t: torch.Tensor) -> torch.Tensor:
        log_mean = self.log_mean(t)
        return log_mean - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_mean))


UNIPC_ORDER = 3  # A1111's defaults: uni_pc_order 3, variant bh1, skip type time_uniform, lower order final


@torch.no_grad()
def sample_unipc(
    model: Model, x: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, *, callback: Callback,
    noise: Callable[[], torch.Tensor], eta: float = 0.0, is_img2img: bool = False,
) -> torch.Tensor:  # fmt: skip
    """A1111's `unipc` (its uni_pc.UniPC with A1111's settings): UniPC's B(h) = h multistep predictor-corrector on the
    data prediction, order 3 (lower at the start and the end), over times uniform from t_T to 1/N; `len(timesteps)`
    steps, each one evaluation. img2img starts at A1111's t = last timestep / 1000 + 1 / 1000."""
    from ..errors import EngineError

    steps = len(timesteps)
    if steps < UNIPC_ORDER:
        raise EngineError(
            f"UniPC runs {steps} step(s) here, fewer than its order {UNIPC_ORDER} (A1111 refuses that too)"
        )
    schedule = _NoiseScheduleVP(alphas_cumprod.to(x.device))  # its times live on the device, with the latents
    t_start = float(timesteps[-1]) / 1000 + 1 / 1000 if is_img2img else 1.0
    times = torch.linspace(t_start, 1.0 / schedule.total, steps + 1).to(x.device)
    batch = x.shape[0]
    done = 0

    def data_prediction(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = model(x, (t - 1.0 / schedule.total) * 1000.0)
        return (x - schedule.std(t)[:, None, None, None] * eps) / schedule.alpha(t)[:, None, None, None]

    def update(
        x: torch.Tensor, previous: list[torch.Tensor], previous_t: list[torch.Tensor], t: torch.Tensor, order: int,
        corrector: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """uni_pc.multistep_uni_pc_bh_update with predict_x0 and variant bh1."""
        lambda_prev, lambda_t = schedule.lam(previous_t[-1]), schedule.lam(t)
        model_prev = previous[-1]
        sigma_prev, sigma_t = schedule.std(previous_t[-1]), schedule.std(t)
        alpha_t = torch.exp(schedule.log_mean(t))
        h = lambda_t - lambda_prev
        rks, differences = [], []
        for i in range(1, order):
            rk = ((schedule.lam(previous_t[-(i + 1)]) - lambda_prev) / h)[0]
            rks.append(rk)
            differences.append((previous[-(i + 1)] - model_prev) / rk)
        rks.append(torch.ones((), device=x.device))  # filled there: torch.tensor(1.0, device=) is a blocking copy
        ratios = torch.stack([torch.as_tensor(rk, device=x.device, dtype=torch.float32) for rk in rks])
        hh = -h[0]
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        factorial = 1
        rows, b = [], []
        for i in range(1, order + 1):
            rows.append(torch.pow(ratios, i - 1))
            b.append(h_phi_k * factorial / hh)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        r_matrix, b_vector = torch.stack(rows), torch.stack(b).to(x.device)
        stacked = torch.stack(differences, dim=1) if differences else None
        if stacked is not None:
            rhos_p = torch.full((1,), 0.5, device=x.device) if order == 2 else _solve(r_matrix[:-1, :-1], b_vector[:-1])
        rhos_c = torch.full((1,), 0.5, device=x.device) if order == 1 else _solve(r_matrix, b_vector)
        expand = (slice(None), None, None, None)
        x_base = (sigma_t / sigma_prev)[expand] * x - (alpha_t * h_phi_1)[expand] * model_prev
        predicted = torch.einsum("k,bkchw->bchw", rhos_p, stacked) if stacked is not None else 0
        x_t = x_base - (alpha_t * hh)[expand] * predicted
        model_t = None
        if corrector:
            model_t = data_prediction(x_t, t)
            corrected = torch.einsum("k,bkchw->bchw", rhos_c[:-1], stacked) if stacked is not None else 0
            x_t = x_base - (alpha_t * hh)[expand] * (corrected + rhos_c[-1] * (model_t - model_prev))
        return x_t, model_t

    def after(x: torch.Tensor, model_x: torch.Tensor) -> None:
        nonlocal done
        callback({"x": x, "i": done, "sigma": 0, "sigma_hat": 0, "denoised": model_x})
        done += 1

    vec_t = times[0].expand(batch)
    previous, previous_t = [data_prediction(x, vec_t)], [vec_t]
    for init_order in range(1, UNIPC_ORDER):
        vec_t = times[init_order].expand(batch)
        x, model_x = update(x, previous, previous_t, vec_t, init_order, corrector=True)
        assert model_x is not None
        after(x, model_x)
        previous.append(model_x)
        previous_t.append(vec_t)
    for step in range(UNIPC_ORDER, steps + 1):
        vec_t = times[step].expand(batch)
        order = min(UNIPC_ORDER, steps + 1 - step)
        x, model_x = update(x, previous, previous_t, vec_t, order, corrector=step != steps)
        after(x, model_x if model_x is not None else previous[-1])
        previous, previous_t = [*previous[1:], previous[-1]], [*previous_t[1:], vec_t]
        if step < steps:
            previous[-1] = model_x if model_x is not None else data_prediction(x, vec_t)
    return x


def _solve(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """torch.linalg.solve without its error check, which on a GPU waits for the device (twice a UniPC step); the
    matrix is UniPC's small Vandermonde one of distinct step ratios, never singular."""
    return torch.linalg.solve_ex(matrix, vector).result


TIMESTEP_SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddim": sample_ddim, "plms": sample_plms, "unipc": sample_unipc,
}  # fmt: skip


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
        base.esd_lcm = LCMDenoiser(base.inner_model, base.esd_alphas_cumprod.to(base.sigmas.device))
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
