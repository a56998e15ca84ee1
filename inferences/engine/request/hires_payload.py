"""A txt2img payload's hires fix (`enable_hr` and the `hr_*` keys) → the second pass A1111 runs (no torch).

The sizes follow A1111's StableDiffusionProcessingTxt2Img: `hr_scale` multiplies the first pass's size; with
`hr_resize_x`/`hr_resize_y` one side is given and the other keeps the aspect, and with both the upscaled picture
covers the box and its latent is cropped to it (A1111's truncate_x/y).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import EngineError
from .model_names import model_title_name
from .prompts import NetworkTag, extract_networks
from .reader import Reader
from .samplers import resolve_sampler

if TYPE_CHECKING:
    from .limits import Limits

# A1111's shared.latent_upscale_modes: name -> (torch interpolation mode, antialias)
LATENT_UPSCALERS: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
PIXEL_UPSCALERS = ("Lanczos", "Nearest", "None")  # built in; any other name is one of the job's Upscaler models
SAME = ("", "Use same sampler", "Use same scheduler", "Use same checkpoint")


@dataclass
class Hires:
    scale: float  # a float, as A1111's API model makes it (so the infotext says "Hires upscale: 2.0")
    resize: tuple[int, int] | None  # (hr_resize_x, hr_resize_y) when either is set
    upscaler: str
    upscale_width: int  # A1111's hr_upscale_to_x/y: the upscaled first pass
    upscale_height: int
    truncate_x: int  # latent columns and rows cropped off (A1111's truncate_x/y), half each side
    truncate_y: int
    steps: int  # hr_second_pass_steps; 0: as many as the first pass
    denoising_strength: float
    sampler: str | None  # None: the first pass's sampler and schedule
    schedule: str | None
    schedule_given: bool
    prompt: str | None  # None: the first pass's prompts
    negative_prompt: str | None
    text: str | None = None  # the hires prompts without their extra-network tags
    negative_text: str | None = None
    checkpoint_name: str | None = None  # hr_checkpoint_name: one of the job's Stable-diffusion models
    # For the infotext, which A1111 writes from the payload as it came (a plan stored before these had them unset):
    upscaler_given: bool = False  # hr_upscaler was sent (A1111 names the upscaler only then)
    sampler_sent: str | None = None  # hr_sampler_name as sent

    @property
    def latent(self) -> bool:
        return self.upscaler in LATENT_UPSCALERS

    @property
    def width(self) -> int:
        """The final picture's width: the upscaled latent less the cropped columns."""
        return (self.upscale_width // 8 - self.truncate_x) * 8

    @property
    def height(self) -> int:
        return (self.upscale_height // 8 - self.truncate_y) * 8


def _optional(read: Reader, key: str, limit: int = 200) -> str | None:
    value = read.data.get(key)
    if value is None:
        return None
    text = read.text(key, "", limit)
    return None if text in SAME or text == "None" else text


def parse_hires(
    read: Reader, width: int, height: int, networks: list[NetworkTag], limits: Limits
) -> tuple[Hires, list[str]]:
    """The hires pass of a txt2img payload with `enable_hr` true, and what of it is not honoured."""
    ignored: list[str] = []
    scale = read.number("hr_scale", 2.0, 1.0, 8.0)
    resize_x = read.integer("hr_resize_x", 0, 0, limits.max_side)
    resize_y = read.integer("hr_resize_y", 0, 0, limits.max_side)
    truncate_x = truncate_y = 0
    if not resize_x and not resize_y:
        to_x, to_y = int(width * scale), int(height * scale)
    elif not resize_y:
        to_x, to_y = resize_x, resize_x * height // width
    elif not resize_x:
        to_x, to_y = resize_y * width // height, resize_y
    else:
        if width / height < resize_x / resize_y:
            to_x, to_y = resize_x, resize_x * height // width
        else:
            to_x, to_y = resize_y * width // height, resize_y
        truncate_x, truncate_y = (to_x - resize_x) // 8, (to_y - resize_y) // 8
    if max(to_x, to_y) > limits.max_side or min(to_x, to_y) < 64:
        raise EngineError(
            f"the hires fix would upscale to {to_x}x{to_y}; each side must be from 64 to {limits.max_side} "
            "(lower hr_scale or hr_resize_x/hr_resize_y)"
        )
    if to_x * to_y > limits.max_pixels:
        raise EngineError(
            f"the hires fix would upscale to {to_x}x{to_y} = {to_x * to_y} pixels; at most {limits.max_pixels} "
            "are accepted (lower hr_scale or hr_resize_x/hr_resize_y)"
        )
    upscaler = read.text("hr_upscaler", "Latent", 200) or "Latent"
    sampler_field = _optional(read, "hr_sampler_name")
    schedule_field = _optional(read, "hr_scheduler")
    sampler = schedule = None
    if sampler_field is not None or schedule_field is not None:  # otherwise the second pass keeps the first's
        base = sampler_field or read.data.get("sampler_name") or read.data.get("sampler_index") or "Euler"
        first_schedule = read.data.get("scheduler")
        fallback = first_schedule if isinstance(first_schedule, str) else None
        sampler, schedule = resolve_sampler(str(base), schedule_field or fallback)
    checkpoint = _optional(read, "hr_checkpoint_name")
    hires = Hires(
        scale=scale,
        resize=(resize_x, resize_y) if resize_x or resize_y else None,
        upscaler=upscaler,
        upscaler_given=bool(read.data.get("hr_upscaler")),
        upscale_width=to_x,
        upscale_height=to_y,
        truncate_x=truncate_x,
        truncate_y=truncate_y,
        steps=read.integer("hr_second_pass_steps", 0, 0, limits.max_steps),
        denoising_strength=read.number("denoising_strength", 0.75, 0.0, 1.0),
        sampler=sampler,
        sampler_sent=sampler_field,
        schedule=schedule,
        schedule_given=schedule_field is not None,
        prompt=_optional(read, "hr_prompt", limits.max_prompt_chars),
        negative_prompt=_optional(read, "hr_negative_prompt", limits.max_prompt_chars),
        checkpoint_name=model_title_name(checkpoint) if checkpoint else None,
    )
    for attribute, text in (("text", hires.prompt), ("negative_text", hires.negative_prompt)):
        if text is not None:
            stripped, tags = extract_networks(text)
            setattr(hires, attribute, stripped)
            if tags and sorted(tags, key=repr) != sorted(networks, key=repr):
                ignored.append(f"{'hr_prompt' if attribute == 'text' else 'hr_negative_prompt'}'s extra networks "
                               "(the second pass keeps the first pass's LoRAs)")  # fmt: skip
    if read.data.get("hr_additional_modules") not in (None, [], ["Use same choices"]):
        ignored.append("hr_additional_modules")
    return hires, ignored
