"""A1111's sampling: k-diffusion's `sample_*` functions over the model's own sigmas, with A1111's noise.

As A1111 (modules/sd_samplers_kdiffusion.py) and diffusers' own k-diffusion pipeline do it: the UNet is wrapped as
a k-diffusion `DiscreteEpsDDPMDenoiser` built from the checkpoint's `alphas_cumprod` (CompVis discretisation,
t over 0..999), classifier-free guidance batches [cond, uncond] through it, and the schedule types are
k-diffusion's (`get_sigmas_karras`, `_exponential`, `_polyexponential`) or A1111's (uniform: the model's own
`get_sigmas`; SGM Uniform). Noise follows A1111's rng.py: one generator per image seeded with its seed draws the
image's initial noise and then, in turn, every ancestral noise of that image, on the CUDA device for its default
`randn_source: GPU` on a CUDA worker, else on the CPU (its CPU source, and what its GPU source draws on a machine
without CUDA); the SDE samplers draw from a Brownian tree seeded with the batch's seeds.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import itertools
import sys
import threading
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import EngineError
from ..models.compiling import bucket, is_compiled, padded
from ..models.invariance import calls_per_image
from ..request.samplers import SAMPLERS, effective_schedule
from .timesteps import TIMESTEP_SAMPLERS, get_timesteps, lcm_denoiser, sample_lcm

_import_lock = threading.Lock()
# torchsde checks a Brownian tree's query times against its float32 ends and warns about rounding-sized overshoots
# (A1111 shows the same warnings); they do not change the noise.
warnings.filterwarnings("ignore", message="Should have (ta>=t0|tb<=t1)", category=UserWarning, module="torchsde")


A1111_ETA_ANCESTRAL = 1.0  # A1111's default `eta_ancestral` option: the eta of k-diffusion samplers


def _append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """k_diffusion.utils.append_dims: trailing dimensions until `x` has `target_dims` of them; a 0-dim tensor is
    returned as it is, which broadcasts alike. That is what lets the sigma schedule stay on the host (sigmas_for):
    a 0-dim CPU tensor may meet tensors on any device, a [1, 1, 1, 1] one may not."""
    if x.ndim == 0:
        return x
    missing = target_dims - x.ndim
    if missing < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * missing]


def k_diffusion() -> tuple[Any, Any]:
    """`k_diffusion.sampling` and `k_diffusion.external` from the installed k-diffusion package.

    The package's `__init__` imports its training and evaluation modules, which need torchvision, clean-fid and
    CLIP; those cannot install beside a CPU build of torch, and sampling never uses them. `utils` imports
    torchvision for two image helpers, and sampling and external take only `append_dims` from it. So the package
    is entered without running `__init__`, with a `utils` holding that one function, and the two modules A1111 uses
    are k-diffusion's own, unchanged."""
    with _import_lock:
        if "k_diffusion.external" not in sys.modules:
            spec = importlib.util.find_spec("k_diffusion")
            if spec is None or not spec.submodule_search_locations:
                raise EngineError("the k-diffusion package is not installed (make installs requirements-nodeps.txt)")
            package = sys.modules.get("k_diffusion") or types.ModuleType("k_diffusion")
            package.__path__ = list(spec.submodule_search_locations)
            utils = types.ModuleType("k_diffusion.utils")
            utils.append_dims = _append_dims  # type: ignore[attr-defined]
            package.utils = utils  # type: ignore[attr-defined]
            sys.modules.setdefault("k_diffusion", package)
            sys.modules.setdefault("k_diffusion.utils", utils)
            __import__("k_diffusion.sampling")
            __import__("k_diffusion.external")
    return sys.modules["k_diffusion.sampling"], sys.modules["k_diffusion.external"]


def alphas_cumprod(scheduler_config: Any) -> torch.Tensor:
    """The checkpoint's training noise levels, computed as LDM computes and registers them (float64, then float32)."""
    config = dict(scheduler_config)
    count = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    kind = config.get("beta_schedule", "scaled_linear")
    if kind == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, count, dtype=torch.float64) ** 2
    elif kind == "linear":
        betas = torch.linspace(start, end, count, dtype=torch.float64)
    else:
        raise EngineError(f"the model's beta_schedule {kind!r} is not one A1111's samplers support")
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


def parameter_dtype(module: Any) -> torch.dtype:
    """A module's dtype from its first parameter (diffusers' `.dtype` property walks every submodule per call)."""
    return next(module.parameters()).dtype


def parameter_device(module: Any) -> torch.device:
    return next(module.parameters()).device


@dataclass(frozen=True)
class TextCond:
    """What the UNet is conditioned on for a batch: the text's hidden states [batch, tokens, dim] and, for SDXL, the
    pooled text [batch, dim] and the size values [batch, 6] (original size, crop top-left, target size)."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    @property
    def tokens(self) -> int:
        return int(self.hidden.shape[1])

    def repeat(self, count: int) -> TextCond:
        return TextCond(
            self.hidden.repeat(count, 1, 1),
            None if self.pooled is None else self.pooled.repeat(count, 1),
            None if self.time_ids is None else self.time_ids.repeat(count, 1),
        )

    def row(self, index: int) -> TextCond:
        """Image `index`'s conditioning (a text of one row serves every image)."""
        if self.hidden.shape[0] == 1:
            return self
        pick = slice(index, index + 1)
        return TextCond(
            self.hidden[pick],
            None if self.pooled is None else self.pooled[pick],
            None if self.time_ids is None else self.time_ids[pick],
        )

    def padded(self, tokens: int) -> TextCond:
        """Lengthened to `tokens` by repeating its last vector, as A1111's reconstruct_multicond_batch evens out the
        sub-prompts of a composable prompt."""
        if self.tokens >= tokens:
            return self
        last = self.hidden[:, -1:].expand(-1, tokens - self.tokens, -1)
        return TextCond(torch.cat([self.hidden, last], dim=1), self.pooled, self.time_ids)

    @staticmethod
    def cat(parts: list[TextCond]) -> TextCond:
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        return TextCond(
            torch.cat([part.hidden for part in parts]),
            None if first.pooled is None else torch.cat([part.pooled for part in parts]),  # type: ignore[misc]
            None if first.time_ids is None else torch.cat([part.time_ids for part in parts]),  # type: ignore[misc]
        )


@dataclass
class ActiveControl:
    """One ControlNet unit in one sampling pass: its model, its hint at the pass's size and how it is applied."""

    model: Any  # a diffusers ControlNetModel
    hint: torch.Tensor  # [1, 3, H, W], 0..1
    weight: float
    start: float  # guidance_start/end: the fraction of the pass's steps it guides
    end: float
    soft: bool  # sd-webui-controlnet's soft injection: residual i scaled by 0.825 ** (12 - i)
    cond_only: bool  # "ControlNet is more important": the unconditional half of CFG gets no control

    def guides(self, step: int, steps: int) -> bool:
        """sd-webui-controlnet's rule (scripts/hook.py, guidance_schedule_handler): before each model evaluation it
        compares A1111's `state.sampling_step / state.sampling_steps` with guidance_start and _end, both inclusive.
        The sampler's callback sets sampling_step after each step, so during step i it is i - 1 (0 during the first
        two): one step behind diffusers' rule, and guidance_end 0 still guides those two steps (issue 30.16)."""
        current = max(0, step - 1) / steps
        return self.start <= current <= self.end


@dataclass
class ControlPass:
    """The ControlNet units of one sampling pass; `step` follows the sampler (its callback sets it)."""

    units: list[ActiveControl]
    steps: int
    step: int = 0

    def residuals(
        self, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor, added: Any, cond_rows: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor] | None:
        """The summed UNet residuals of the units guiding this step, or None when none does."""
        down_total: list[torch.Tensor] | None = None
        mid_total: torch.Tensor | None = None
        for unit in self.units:
            if not unit.guides(self.step, self.steps):
                continue
            hint = unit.hint.expand(x.shape[0], -1, -1, -1)
            down, mid = unit.model(
                x, t, encoder_hidden_states=hidden, controlnet_cond=hint, conditioning_scale=1.0,
                added_cond_kwargs=added, return_dict=False,
            )  # fmt: skip
            outputs = [*down, mid]
            # the extension's 13 soft scales, zipped onto the residuals (SDXL's 10 take the first 10, as there)
            scales = (
                [unit.weight * 0.825 ** float(12 - i) for i in range(13)] if unit.soft else [unit.weight] * len(outputs)
            )
            rows = cond_rows.to(x.dtype)[:, None, None, None] if unit.cond_only else None
            scaled = [
                output * scale * rows if rows is not None else output * scale
                for output, scale in zip(outputs, scales, strict=False)
            ]
            if down_total is None or mid_total is None:
                down_total, mid_total = scaled[:-1], scaled[-1]
            else:
                down_total = [total + new for total, new in zip(down_total, scaled[:-1], strict=True)]
                mid_total = mid_total + scaled[-1]
        return None if down_total is None or mid_total is None else (down_total, mid_total)


class _UNetEps(torch.nn.Module):
    """The diffusers UNet as k-diffusion's inner model: (x, t, cond) -> predicted noise, with the residuals of the
    ControlNet units that guide the step."""

    def __init__(self, unet: Any) -> None:
        super().__init__()
        self.unet = unet
        # diffusers' ModelMixin.dtype walks every module (12 ms a job on the tiny model): read it once
        self.dtype = parameter_dtype(unet)
        self.compiled = is_compiled(unet)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: TextCond,
        control: ControlPass | None = None,
        cond_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        dtype = self.dtype
        added = None
        if cond.pooled is not None:  # SDXL: the pooled text and the size conditioning
            added = {"text_embeds": cond.pooled.to(dtype), "time_ids": cond.time_ids.to(dtype)}  # type: ignore[union-attr]
        sample, timestep, hidden = x.to(dtype), t.to(dtype), cond.hidden.to(dtype)
        extra: dict[str, Any] = {}
        if control is not None and cond_rows is not None:
            residuals = control.residuals(sample, timestep, hidden, added, cond_rows)
            if residuals is not None:
                extra = {"down_block_additional_residuals": residuals[0], "mid_block_additional_residual": residuals[1]}
        rows = sample.shape[0]
        if self.compiled and bucket(rows) != rows:  # one graph per bucket, not per batch size
            size = bucket(rows)
            sample, timestep, hidden = padded(sample, size), padded(timestep, size), padded(hidden, size)  # type: ignore[assignment]
            if added is not None:
                added = {key: padded(value, size) for key, value in added.items()}
            if extra:
                extra = {
                    "down_block_additional_residuals": [
                        padded(r, size) for r in extra["down_block_additional_residuals"]
                    ],
                    "mid_block_additional_residual": padded(extra["mid_block_additional_residual"], size),
                }
        eps = self.unet(sample, timestep, encoder_hidden_states=hidden, added_cond_kwargs=added, **extra)
        return eps.sample[:rows].to(x.dtype)


def denoiser(unet: Any, scheduler_config: Any) -> Any:
    """k-diffusion's CompVis-style denoiser over the UNet (A1111: CompVisDenoiser, quantize off)."""
    _, external = k_diffusion()
    # Its sigma buffers must live where the latents do (sigma_to_t mixes them), as A1111's move with the model.
    levels = alphas_cumprod(scheduler_config)
    wrapped = external.DiscreteEpsDDPMDenoiser(_UNetEps(unet), levels.to(parameter_device(unet)), quantize=False)
    # A1111's model.alphas_cumprod, which its DDIM, PLMS and LCM read: kept on the host, as the sigma schedule is
    wrapped.esd_alphas_cumprod = levels
    return wrapped


def sigmas_for(model_denoiser: Any, name: str, schedule: str | None, steps: int, *, sdxl: bool = False) -> torch.Tensor:
    """The sigma schedule A1111 runs for `steps` steps of sampler `name` (KDiffusionSampler.get_sigmas; the schedule
    types of modules/sd_schedulers.py). `sdxl`: Align Your Steps has a table per model family."""
    sampling, _ = k_diffusion()
    sampler = SAMPLERS[name]
    if sampler.timesteps:  # A1111's own: timesteps, whatever the schedule type
        return get_timesteps(steps)
    if sampler.function == "sample_lcm":
        model_denoiser = lcm_denoiser(model_denoiser, *k_diffusion())
    steps += 1 if sampler.discard_penultimate else 0
    kind = effective_schedule(name, schedule)
    sigma_min, sigma_max = model_denoiser.sigmas[0].item(), model_denoiser.sigmas[-1].item()
    if kind == "uniform":
        sigmas = model_denoiser.get_sigmas(steps)
    elif kind == "karras":
        sigmas = sampling.get_sigmas_karras(n=steps, sigma_min=sigma_min, sigma_max=sigma_max)
    elif kind == "exponential":
        sigmas = sampling.get_sigmas_exponential(n=steps, sigma_min=sigma_min, sigma_max=sigma_max)
    elif kind == "polyexponential":
        sigmas = sampling.get_sigmas_polyexponential(n=steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=1.0)
    elif kind in EXTRA_SCHEDULES:
        sigmas = EXTRA_SCHEDULES[kind](model_denoiser, steps, sigma_min, sigma_max, sdxl)
    else:
        raise EngineError(f"schedule {kind!r} is not supported by {name}")
    # On the host: each step's arithmetic over the schedule (sigma ratios, `if sigmas[i + 1] == 0`) then runs on the
    # CPU, where a comparison does not wait for the device to finish the step, so the worker queues the next step
    # while the device runs this one (on a GPU schedule, every sampler but LMS waited 1 to 7 times a step)
    sigmas = sigmas.to("cpu", torch.float32)
    if sampler.discard_penultimate:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas


def _with_zero(sigmas: list[float]) -> torch.Tensor:
    return torch.tensor([*sigmas, 0.0], dtype=torch.float32)


def _kl_optimal(denoiser: Any, n: int, sigma_min: float, sigma_max: float, sdxl: bool) -> torch.Tensor:
    # KL-optimal: tan of a linear walk from atan(sigma_max) to atan(sigma_min); its last sigma is sigma_min, no zero
    alpha_min, alpha_max = torch.arctan(torch.tensor(sigma_min)), torch.arctan(torch.tensor(sigma_max))
    steps = torch.arange(n + 1)
    return torch.tan(steps / n * alpha_min + (1.0 - steps / n) * alpha_max)


AYS_SD1 = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
AYS_SDXL = [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029]


def _align_your_steps(denoiser: Any, n: int, sigma_min: float, sigma_max: float, sdxl: bool) -> torch.Tensor:
    # NVIDIA's 10-step tables, log-linearly interpolated (in numpy, as A1111 does) to other step counts
    table = AYS_SDXL if sdxl else AYS_SD1
    if n == len(table):
        return _with_zero(table)
    xs, ys = np.linspace(0, 1, len(table)), np.log(table[::-1])
    return _with_zero(list(np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1]))


def _simple(denoiser: Any, n: int, sigma_min: float, sigma_max: float, sdxl: bool) -> torch.Tensor:
    # every (len / n)-th sigma of the model's table, from the top
    table, stride = denoiser.sigmas, len(denoiser.sigmas) / n
    return _with_zero([float(table[-(1 + int(x * stride))]) for x in range(n)])


def _normal(denoiser: Any, n: int, sigma_min: float, sigma_max: float, sdxl: bool, sgm: bool = False) -> torch.Tensor:
    # A1111's normal_scheduler: n timesteps evenly from sigma_max's to sigma_min's, both ends included; SGM Uniform
    # (sgm) spaces n + 1 and leaves the last out
    start, end = denoiser.sigma_to_t(torch.tensor(sigma_max)), denoiser.sigma_to_t(torch.tensor(sigma_min))
    timesteps = torch.linspace(start, end, n + 1)[:-1] if sgm else torch.linspace(start, end, n)
    return _with_zero([float(denoiser.t_to_sigma(t)) for t in timesteps])


def _ddim(denoiser: Any, n: int, sigma_min: float, sigma_max: float, sdxl: bool) -> torch.Tensor:
    # the table's sigmas 1, 1 + stride, ... (stride = len // n), highest first
    table, stride = denoiser.sigmas, max(len(denoiser.sigmas) // n, 1)
    return _with_zero([float(table[x]) for x in range(1, len(table), stride)][::-1])


BETA_ALPHA = BETA_BETA = 0.6  # A1111's beta_dist_alpha / beta_dist_beta defaults


def _beta(denoiser: Any, n: int, sigma_min: float, sigma_max: float, sdxl: bool) -> torch.Tensor:
    # "Beta Sampling is All You Need" (Lee et al. 2024): sigmas at the beta distribution's quantiles
    from scipy import stats

    quantiles = [stats.beta.ppf(x, BETA_ALPHA, BETA_BETA) for x in 1 - np.linspace(0, 1, n)]
    return _with_zero([sigma_min + q * (sigma_max - sigma_min) for q in quantiles])


EXTRA_SCHEDULES: dict[str, Callable[[Any, int, float, float, bool], torch.Tensor]] = {
    "sgm_uniform": functools.partial(_normal, sgm=True),
    "kl_optimal": _kl_optimal,
    "align_your_steps": _align_your_steps,
    "simple": _simple,
    "normal": _normal,
    "ddim": _ddim,
    "beta": _beta,
}


def noise_device(device: torch.device, on_device: bool) -> torch.device:
    """Where A1111's generators draw: the CUDA device for its GPU source (`on_device`), else the CPU."""
    return device if on_device and device.type == "cuda" else torch.device("cpu")


def _randn(
    seed: int, shape: tuple[int, ...], generator: torch.Generator | None = None, device: torch.device | None = None
) -> torch.Tensor:
    where = device or torch.device("cpu")
    return torch.randn(shape, generator=generator or torch.Generator(where).manual_seed(seed), device=where)


def slerp(strength: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's spherical interpolation of two noises for variation seeds (per channel row, as A1111 computes it)."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * strength + high * (1 - strength)  # A1111's own shortcut, kept as it is
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - strength) * omega) / so).unsqueeze(1) * low + (torch.sin(strength * omega) / so).unsqueeze(
        1
    ) * high


class ImageNoise:
    """A1111's ImageRNG: a generator per image (on the CUDA device with `on_device`, A1111's GPU source on a CUDA
    worker; else on the CPU), seeded with the image's seed; the first draw is the image's initial noise, each later
    one the noise an ancestral step adds to it.

    Variation seeds mix each image's noise with the noise of its subseed (slerp by `subseed_strength`); with
    `resize_from`, the noise is drawn at that size and centred in (or cropped to) this size, so a seed keeps its
    composition at another size. With `eta_noise_seed_delta` the generators are seeded again with seed + delta
    after the first draw. All as A1111 does it."""

    def __init__(
        self,
        shape: tuple[int, ...],
        seeds: list[int],
        device: torch.device,
        noise_seed_delta: int = 0,
        subseeds: list[int] | None = None,
        subseed_strength: float = 0.0,
        resize_from: tuple[int, int] | None = None,
        on_device: bool = False,
    ) -> None:
        self.shape = shape
        self.seeds = seeds
        self.device = device
        self.source = noise_device(device, on_device)
        self.delta = noise_seed_delta
        self.subseeds = subseeds or []
        self.subseed_strength = subseed_strength
        self.drawn_shape = shape if resize_from is None else (shape[0], resize_from[1] // 8, resize_from[0] // 8)
        self.generators = [torch.Generator(self.source).manual_seed(seed) for seed in seeds]
        self.drawn = 0

    def _first(self, index: int, seed: int, generator: torch.Generator) -> torch.Tensor:
        resized = self.drawn_shape != self.shape
        where = self.source
        noise = _randn(seed, self.drawn_shape, device=where) if resized else _randn(seed, self.shape, generator, where)
        if self.subseed_strength != 0 and self.subseeds:
            subseed = self.subseeds[index] if index < len(self.subseeds) else 0
            noise = slerp(self.subseed_strength, noise, _randn(subseed, self.drawn_shape, device=where))
        if resized:
            x = _randn(seed, self.shape, generator, where)
            dx = (self.shape[2] - self.drawn_shape[2]) // 2
            dy = (self.shape[1] - self.drawn_shape[1]) // 2
            w = self.drawn_shape[2] if dx >= 0 else self.drawn_shape[2] + 2 * dx
            h = self.drawn_shape[1] if dy >= 0 else self.drawn_shape[1] + 2 * dy
            tx, ty = max(dx, 0), max(dy, 0)
            sx, sy = max(-dx, 0), max(-dy, 0)
            x[:, ty : ty + h, tx : tx + w] = noise[:, sy : sy + h, sx : sx + w]
            noise = x
        return noise

    def next(self) -> torch.Tensor:
        if self.drawn == 0:
            noise = torch.stack(
                [
                    self._first(i, seed, generator)
                    for i, (seed, generator) in enumerate(zip(self.seeds, self.generators, strict=False))
                ]
            )
            if self.delta:
                self.generators = [torch.Generator(self.source).manual_seed(seed + self.delta) for seed in self.seeds]
        else:
            noise = torch.stack(
                [torch.randn(self.shape, generator=generator, device=self.source) for generator in self.generators]
            )
        self.drawn += 1
        return noise.to(self.device)


Schedule = list[tuple[int, TextCond]]  # (end_at_step, the conditioning until then), as A1111's prompt editing makes


@dataclass
class Conditioning:
    """One batch's text conditioning over the steps: one entry per prompt text in force (prompt editing and
    alternation switch them); a prompt without editing has one entry."""

    cond: Schedule
    uncond: Schedule
    # A1111's composable diffusion (`AND`, a trailing `:weight`): each sub-prompt's schedule and CFG weight; None for
    # a plain prompt, whose `cond` is the whole guidance
    parts: list[tuple[Schedule, float]] | None = None

    def at(self, step: int) -> tuple[TextCond, TextCond]:
        return _in_force(self.cond, step), _in_force(self.uncond, step)

    def parts_at(self, step: int) -> list[tuple[TextCond, float]]:
        assert self.parts is not None
        return [(_in_force(schedule, step), weight) for schedule, weight in self.parts]


@dataclass
class SharedConditioning:
    """Several jobs' conditioning in one batch (dynamic batching): each job's own prompts and prompt editing, its
    rows in job order; a job that has left the batch (cancelled) has its rows skipped, the others go on."""

    parts: list[Conditioning]
    counts: list[int]  # the rows (images) of each job
    active: list[bool]

    def at(self, step: int) -> tuple[TextCond, TextCond]:
        live = [part for part, active in zip(self.parts, self.active, strict=True) if active]
        return (
            TextCond.cat([_in_force(part.cond, step) for part in live]),
            TextCond.cat([_in_force(part.uncond, step) for part in live]),
        )

    def rows(self, device: torch.device) -> torch.Tensor | None:
        """Which rows of the batch still run, or None when all do."""
        if all(self.active):
            return None
        flags = [active for active, count in zip(self.active, self.counts, strict=True) for _ in range(count)]
        return torch.tensor(flags, dtype=torch.bool, device=device)


def _in_force(schedule: Schedule, step: int) -> TextCond:
    """A1111's reconstruct_cond_batch: the first entry whose end is at or after `step`, else the first."""
    for end, tensor in schedule:
        if step <= end:
            return tensor
    return schedule[0][1]


@dataclass
class LatentMask:
    """Inpainting with a regular model, as A1111 does it: after every model evaluation the denoised latent keeps the
    starting latent where the mask keeps the picture (`keep` = 1 - the latent-size mask), and so does the result."""

    init: torch.Tensor
    keep: torch.Tensor

    def blend(self, latent: torch.Tensor) -> torch.Tensor:
        return self.init * self.keep + latent * (1 - self.keep)


class CFGDenoiser:
    """Classifier-free guidance as A1111's CFGDenoiser: [cond, uncond] in one batch when their token counts agree,
    otherwise one call each (A1111's default, which pads neither); uncond + scale x (cond - uncond). Its step
    counter counts model evaluations, which is what A1111's prompt-editing steps count."""

    def __init__(
        self,
        inner: Any,
        conditioning: Conditioning | SharedConditioning,
        cfg_scale: float | torch.Tensor,
        inpaint: LatentMask | None = None,
        control: ControlPass | None = None,
        mask_before: bool = False,
    ) -> None:
        self.inner = inner
        self.conditioning = conditioning
        self.cfg_scale = cfg_scale
        self.inpaint = inpaint
        self.control = control
        # A1111's mask_before_denoising (its timestep samplers): the mask blends into the latents before the
        # prediction rather than into the prediction after it
        self.mask_before = mask_before
        self.step = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
        rows = self.conditioning.rows(x.device) if isinstance(self.conditioning, SharedConditioning) else None
        if rows is None:
            return self._guided(x, sigma, self.cfg_scale)
        # Jobs that left the batch keep their rows (the sampler's state is one tensor) but cost no UNet call: their
        # denoised is x itself, so their rows stand still until the batch ends and they are dropped.
        denoised = x.clone()
        scale = self.cfg_scale[rows] if isinstance(self.cfg_scale, torch.Tensor) else self.cfg_scale
        denoised[rows] = self._guided(x[rows], sigma[rows], scale)
        return denoised

    def _guided(self, x: torch.Tensor, sigma: torch.Tensor, cfg_scale: float | torch.Tensor) -> torch.Tensor:
        if self.inpaint is not None and self.mask_before:
            x = self.inpaint.blend(x)
        parts = self.conditioning.parts if isinstance(self.conditioning, Conditioning) else None
        if parts is None:
            cond, uncond = self.conditioning.at(self.step)
            [cond_out], uncond_out = self._predict(x, sigma, [cond], uncond)
            denoised = uncond_out + (cond_out - uncond_out) * cfg_scale
        else:
            denoised = self._composed(x, sigma, cfg_scale)
        self.step += 1
        if self.inpaint is not None and not self.mask_before:
            denoised = self.inpaint.blend(denoised)
        return denoised

    def _composed(self, x: torch.Tensor, sigma: torch.Tensor, cfg_scale: float | torch.Tensor) -> torch.Tensor:
        """A1111's composable guidance (combine_denoised): uncond + the sum over sub-prompts of (cond_k - uncond) x
        weight_k x scale, the sub-prompts' conditionings evened out to one length (reconstruct_multicond_batch)."""
        assert isinstance(self.conditioning, Conditioning)
        parts = self.conditioning.parts_at(self.step)
        tokens = max(cond.tokens for cond, _ in parts)
        outs, uncond_out = self._predict(
            x, sigma, [cond.padded(tokens) for cond, _ in parts], _in_force(self.conditioning.uncond, self.step)
        )
        denoised = uncond_out.clone()
        for out, (_, weight) in zip(outs, parts, strict=True):
            denoised += (out - uncond_out) * (weight * cfg_scale)
        return denoised

    def _predict(
        self, x: torch.Tensor, sigma: torch.Tensor, conds: list[TextCond], uncond: TextCond
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The model's outputs for each conditional text (the prompt, or a composable prompt's sub-prompts) and for
        the unconditional one: one call when their token counts agree, otherwise the conditional rows' call and the
        unconditional one (A1111's CFGDenoiser, which pads neither). On CPU one image per call, the call a lone image
        makes, so that no image's numbers depend on its batch (invariance.py)."""
        batch, count = x.shape[0], len(conds)
        if batch > 1 and calls_per_image(x.device):
            parts = [
                self._predict(x[k : k + 1], sigma[k : k + 1], [cond.row(k) for cond in conds], uncond.row(k))
                for k in range(batch)
            ]
            return [torch.cat([part[0][i] for part in parts]) for i in range(count)], torch.cat([p[1] for p in parts])
        control = self.control if self.control is not None and self.control.units else None

        def controlled(conditional: int, rows: int) -> dict[str, Any]:
            """The ControlNet arguments of one UNet call of `rows` rows, the first `conditional` of them CFG's
            conditional ones (built only for a ControlNet: otherwise two device kernels for nothing each call)."""
            if control is None:
                return {}
            return {"control": control, "cond_rows": torch.arange(rows, device=x.device) < conditional}

        xs, sigmas = _repeated(x, count), _repeated(sigma, count)
        if conds[0].tokens == uncond.tokens:
            out = self.inner(
                torch.cat([xs, x]), torch.cat([sigmas, sigma]), cond=TextCond.cat([*conds, uncond]),
                **controlled(count * batch, (count + 1) * batch),
            )  # fmt: skip
            return list(out[: count * batch].chunk(count)), out[count * batch :]
        cond_out = self.inner(xs, sigmas, cond=TextCond.cat(conds), **controlled(count * batch, count * batch))
        return list(cond_out.chunk(count)), self.inner(x, sigma, cond=uncond, **controlled(0, batch))


def _repeated(tensor: torch.Tensor, count: int) -> torch.Tensor:
    """`tensor` `count` times along the batch; itself for one (the plain prompt's call copies nothing)."""
    return tensor if count == 1 else torch.cat([tensor] * count)


def sample_restart(
    model: Any, x: torch.Tensor, sigmas: torch.Tensor, *, callback: Callable[[dict[str, Any]], None],
    noise_sampler: Callable[..., torch.Tensor], s_noise: float = 1.0, **_: Any,
) -> torch.Tensor:  # fmt: skip
    """A1111's `Restart` (modules/sd_samplers_extra.py; Xu et al. 2023): Heun steps down a Karras schedule, and with
    20 steps or more, a restart segment near sigma 0.1 that adds noise back up to sigma 2 and descends again (twice
    from 36 steps). Built on k-diffusion's `to_d` and `get_sigmas_karras`, as A1111's is; the restart noise is the
    image's next draw, as A1111's hijacked `randn_like` gives it."""
    sampling, _ = k_diffusion()
    ones = x.new_ones([x.shape[0]])
    steps = sigmas.shape[0] - 1
    restart: dict[int, tuple[int, int, float]] = {}
    if steps >= 20:
        restart_steps, restart_times = (steps // 4, 2) if steps >= 36 else (9, 1)
        sigmas = sampling.get_sigmas_karras(
            steps - restart_steps * restart_times, sigmas[-2].item(), sigmas[0].item(), device=sigmas.device
        )
        restart = {int(torch.argmin(abs(sigmas - 0.1), dim=0)): (restart_steps + 1, restart_times, 2.0)}
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    for index in range(len(sigmas) - 1):
        pairs.append((sigmas[index], sigmas[index + 1]))
        if index + 1 in restart:
            count, times, restart_max = restart[index + 1]
            low, high = index + 1, int(torch.argmin(abs(sigmas - restart_max), dim=0))
            if high < low:
                again = sampling.get_sigmas_karras(
                    count, sigmas[low].item(), sigmas[high].item(), device=sigmas.device
                )[:-1]
                pairs += list(itertools.pairwise(again)) * times
    last: torch.Tensor | None = None
    for step, (old, new) in enumerate(pairs):
        if last is not None and last < old:
            x = x + noise_sampler(last, old) * s_noise * (old**2 - last**2) ** 0.5
        denoised = model(x, old * ones)
        d = sampling.to_d(x, old, denoised)
        callback({"x": x, "i": step, "sigma": new, "sigma_hat": old, "denoised": denoised})
        if new == 0:
            x = x + d * (new - old)
        else:  # Heun
            x_2 = x + d * (new - old)
            d_2 = sampling.to_d(x_2, new, model(x_2, new * ones))
            x = x + (d + d_2) / 2 * (new - old)
        last = new
    return x


def sample(
    *,
    model_denoiser: Any,
    name: str,
    sigmas: torch.Tensor,
    x: torch.Tensor,
    noise: ImageNoise,
    conditioning: Conditioning | SharedConditioning,
    cfg_scale: float | torch.Tensor,
    seeds: list[int],
    callback: Callable[[int, torch.Tensor], None],
    eta: float | None = None,
    inpaint: LatentMask | None = None,
    control: ControlPass | None = None,
    from_noise: bool = False,
    schedule: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run k-diffusion's sampler `name` from latent `x` (already at noise level sigmas[0]) down `sigmas`;
    `callback(step, denoised)` after each step, with the step's prediction of the clean latents (the live preview's).
    `from_noise`: a txt2img first pass (A1111's `sample`), rather than a pass from a picture (`sample_img2img`).
    `schedule`: the whole schedule `sigmas` is the tail of (img2img, the hires pass); the SDE samplers' Brownian tree
    spans it, as A1111's `create_noise_sampler(x, sigmas, p)` is given the unsliced sigmas (issue 30.7)."""
    # The loop's arithmetic over the schedule runs on the host (sigmas_for hands it over there); a schedule a caller
    # moved to the device is brought back once here, so that no step waits for the device to read it
    sigmas, schedule = sigmas.cpu(), None if schedule is None else schedule.cpu()
    sampling, _ = k_diffusion()
    sampler = SAMPLERS[name]
    if sampler.timesteps:
        return _sample_timesteps(
            model_denoiser, sampler.function, sigmas, x, noise, conditioning, cfg_scale, callback, eta, inpaint, control,
            from_noise,
        )  # fmt: skip
    if sampler.function == "sample_lcm":
        model_denoiser = lcm_denoiser(model_denoiser, *k_diffusion())
    own: dict[str, Callable[..., torch.Tensor]] = {"sample_restart": sample_restart, "sample_lcm": sample_lcm}
    function: Callable[..., torch.Tensor] = own.get(sampler.function) or getattr(sampling, sampler.function)
    parameters = inspect.signature(function).parameters  # through torch.no_grad's wrapper, as A1111 reads them
    arguments: dict[str, Any] = dict(sampler.arguments)
    if "sigma_min" in parameters:  # DPM fast / adaptive take a range, not the schedule
        if from_noise:  # A1111's `sample`: the model's whole range, whatever the schedule type
            arguments["sigma_min"] = model_denoiser.sigmas[0].item()
            arguments["sigma_max"] = model_denoiser.sigmas[-1].item()
        else:  # its `sample_img2img`: the truncated schedule's
            positive = sigmas[sigmas > 0]
            arguments["sigma_min"], arguments["sigma_max"] = positive.min().item(), sigmas.max().item()
        if "n" in parameters:
            arguments["n"] = len(sigmas) - 1
    else:
        arguments["sigmas"] = sigmas
    if "noise_sampler" in parameters:
        if sampler.brownian:
            spanned = sigmas if schedule is None else schedule
            positive = spanned[spanned > 0]
            arguments["noise_sampler"] = sampling.BrownianTreeNoiseSampler(x, positive.min(), spanned.max(), seed=seeds)
        else:
            arguments["noise_sampler"] = lambda sigma, sigma_next: noise.next()
    if "eta" in parameters:
        # A1111: the payload's eta, else its `eta_ancestral` option (1.0) for every k-diffusion sampler that takes
        # one; k-diffusion's own default is 1.0 for most of them but 0 for DPM fast and adaptive (issue 30.8)
        arguments["eta"] = eta if eta is not None else A1111_ETA_ANCESTRAL
    model = CFGDenoiser(model_denoiser, conditioning, cfg_scale, inpaint, control)

    samples = function(model, x, extra_args={}, callback=_step_callback(control, callback), disable=True, **arguments)
    return samples if inpaint is None else inpaint.blend(samples)


def _sample_timesteps(
    model_denoiser: Any, function: str, timesteps: torch.Tensor, x: torch.Tensor, noise: ImageNoise,
    conditioning: Conditioning | SharedConditioning, cfg_scale: float | torch.Tensor,
    callback: Callable[[int, torch.Tensor], None], eta: float | None, inpaint: LatentMask | None,
    control: ControlPass | None, from_noise: bool,
) -> torch.Tensor:  # fmt: skip
    """DDIM, PLMS and UniPC as A1111 runs them (timesteps.py): the guided noise prediction of the UNet itself (its
    CFGDenoiserTimesteps, which blends an inpainting mask into the latents before each prediction), `eta` as its
    Eta DDIM (0 unless sent), the noise from the images' generators."""
    model = CFGDenoiser(model_denoiser.inner_model, conditioning, cfg_scale, inpaint, control, mask_before=True)
    extra = {} if function != "unipc" else {"is_img2img": not from_noise}
    samples = TIMESTEP_SAMPLERS[function](
        model, x, timesteps, model_denoiser.esd_alphas_cumprod,  # both on the host: their .item()s wait for nothing
        callback=_step_callback(control, callback),
        noise=noise.next, eta=0.0 if eta is None else eta, **extra,
    )  # fmt: skip
    return samples if inpaint is None else inpaint.blend(samples)


def _step_callback(
    control: ControlPass | None, callback: Callable[[int, torch.Tensor], None]
) -> Callable[[dict[str, Any]], None]:
    """A sampler's per-step callback (k-diffusion's state dict): the ControlNet pass moves on, then the caller's
    `callback(step, denoised)` runs."""

    def on_step(state: dict[str, Any]) -> None:
        if control is not None:
            control.step = int(state["i"]) + 1  # the next model evaluations belong to the next step
        callback(int(state["i"]), state["denoised"])

    return on_step


def start_from_noise(name: str, schedule: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """txt2img's first latents: the noise at the schedule's first sigma (k-diffusion), or the noise itself (A1111's
    timestep samplers, which see the latents unscaled)."""
    return noise if SAMPLERS[name].timesteps else noise * schedule[0]


def start_from_picture(
    name: str, model_denoiser: Any, schedule: torch.Tensor, t_enc: int, init: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """img2img's (and the hires pass's) start: the latents noised to step `t_enc` of the full `schedule` and the part
    of the schedule that runs from there. k-diffusion: the last t_enc + 1 steps' sigmas; A1111's timestep samplers:
    the first t_enc timesteps, the picture at √ᾱ and the noise at √(1 - ᾱ) of timestep t_enc (sample_img2img)."""
    if not SAMPLERS[name].timesteps:
        tail = schedule[len(schedule) - t_enc - 2 :]
        return init + noise * tail[0], tail
    alpha = model_denoiser.esd_alphas_cumprod[int(schedule[t_enc])]
    return init * torch.sqrt(alpha) + noise * torch.sqrt(1 - alpha), schedule[:t_enc]
