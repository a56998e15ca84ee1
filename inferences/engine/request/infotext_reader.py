"""Reading an A1111 infotext (a PNG's `parameters`) back, as A1111's infotext_utils.parse_generation_parameters does:
the prompt lines, the lines after `Negative prompt:`, and the last line's `Key: value` fields (JSON-quoted values
unquoted, `WxH` sizes split into `Key-1` / `Key-2`). Used by the Generate page's PNG Info (a dropped picture fills
the form) and by the payload's `infotext` key."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ..errors import EngineError
from .samplers import sampler_and_scheduler

# A1111's own expressions (infotext_utils.re_param_code, re_imagesize)
FIELD = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
SIZE = re.compile(r"^(\d+)x(\d+)$")


def unquote(text: str) -> str:
    """A1111's unquote: a value written by its quote() (JSON) read back; anything else as it is."""
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def parse_infotext(text: str) -> dict[str, str]:
    """The infotext's fields by A1111's labels, with "Prompt" and "Negative prompt"; the defaults A1111's paste adds
    for missing fields (Clip skip 1, RNG GPU, ...) are not added: a reader that needs one applies it."""
    *lines, last = text.strip().split("\n")
    if len(FIELD.findall(last)) < 3:  # A1111: a last line with fewer than three fields is part of the prompt
        lines.append(last)
        last = ""
    prompt, negative, negative_started = "", "", False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            negative_started = True
            line = line[16:].strip()
        if negative_started:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    fields: dict[str, str] = {}
    for key, value in FIELD.findall(last):
        if value[:1] == '"' and value[-1:] == '"':
            value = unquote(value)
        size = SIZE.match(value)
        if size is not None:
            fields[f"{key}-1"], fields[f"{key}-2"] = size.group(1), size.group(2)
        else:
            fields[key] = value
    return {"Prompt": prompt, "Negative prompt": negative, **fields}


# What A1111's parse_generation_parameters adds where the infotext has no such field (the paste reads them)
PASTE_DEFAULTS = {
    "Clip skip": "1", "Hires resize-1": 0, "Hires resize-2": 0, "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler", "Hires checkpoint": "Use same checkpoint", "Hires prompt": "",
    "Hires negative prompt": "", "RNG": "GPU", "Schedule type": "Automatic",
}  # fmt: skip


def _sampler(fields: dict[str, Any]) -> str | None:
    return sampler_and_scheduler(fields.get("Sampler"), fields.get("Schedule type"))[0]


def _scheduler(fields: dict[str, Any]) -> str | None:
    return sampler_and_scheduler(fields.get("Sampler"), fields.get("Schedule type"))[1]


def _hires_sampler_and_scheduler(fields: dict[str, Any]) -> tuple[str, str]:
    """A1111's sd_samplers.get_hr_sampler_and_scheduler."""
    chosen = fields.get("Hires sampler", "Use same sampler")
    name = fields.get("Sampler") if chosen == "Use same sampler" else chosen
    sampler, scheduler = sampler_and_scheduler(name, fields.get("Hires schedule type"))
    sampler = sampler if sampler != fields.get("Sampler") else "Use same sampler"
    scheduler = scheduler if scheduler != fields.get("Hires schedule type") else "Use same scheduler"
    return sampler, scheduler


def hires_enabled(fields: dict[str, Any]) -> bool:
    """A1111's enable_hr paste rule: the infotext has a denoising strength and a hires field."""
    return "Denoising strength" in fields and any(
        key in fields for key in ("Hires upscale", "Hires upscaler", "Hires resize-1")
    )


# A1111's paste fields that carry an API name: label (or reader) -> (payload key, type). txt2img's own (ui.py), then
# the Sampler and Seed scripts' (processing_scripts/sampler.py, seed.py), which img2img has too; A1111's img2img tab
# registers its own fields (prompt, size, ...) without API names, so an img2img infotext sets only the scripts'.
Reader = str | Callable[[dict[str, Any]], Any]
TXT2IMG_FIELDS: tuple[tuple[Reader, str, type], ...] = (
    ("Prompt", "prompt", str), ("Negative prompt", "negative_prompt", str), ("CFG scale", "cfg_scale", float),
    ("Size-1", "width", int), ("Size-2", "height", int), ("Batch size", "batch_size", int),
    ("Denoising strength", "denoising_strength", float), (hires_enabled, "enable_hr", bool),
    ("Hires upscale", "hr_scale", float), ("Hires upscaler", "hr_upscaler", str),
    ("Hires steps", "hr_second_pass_steps", int), ("Hires resize-1", "hr_resize_x", int),
    ("Hires resize-2", "hr_resize_y", int), ("Hires checkpoint", "hr_checkpoint_name", str),
    (lambda fields: _hires_sampler_and_scheduler(fields)[0], "hr_sampler_name", str),
    (lambda fields: _hires_sampler_and_scheduler(fields)[1], "hr_scheduler", str),
    ("Hires prompt", "hr_prompt", str), ("Hires negative prompt", "hr_negative_prompt", str),
)  # fmt: skip
SCRIPT_FIELDS: tuple[tuple[Reader, str, type], ...] = (
    ("Steps", "steps", int), (_sampler, "sampler_name", str), (_scheduler, "scheduler", str), ("Seed", "seed", int),
    ("Variation seed", "subseed", int), ("Variation seed strength", "subseed_strength", float),
    # A1111 binds them crosswise (seed.py): "Seed resize from-1" (the width) lands in seed_resize_from_h
    ("Seed resize from-1", "seed_resize_from_h", int), ("Seed resize from-2", "seed_resize_from_w", int),
)  # fmt: skip
# Settings an infotext carries (shared_options.py's `infotext=` labels): label -> (setting, A1111's default, type).
# Only those that differ from the default are set, as get_override_settings does against a fresh install's options
# ("Model hash" -> sd_model_checkpoint is skipped there too: disable_weights_auto_swap is on by default).
SETTINGS: dict[str, tuple[str, Any, type]] = {
    "Clip skip": ("CLIP_stop_at_last_layers", 1, int), "ENSD": ("eta_noise_seed_delta", 0, int),
    "RNG": ("randn_source", "GPU", str), "VAE": ("sd_vae", "Automatic", str), "Emphasis": ("emphasis", "Original", str),
    "Eta": ("eta_ancestral", 1.0, float), "Eta DDIM": ("eta_ddim", 0.0, float), "Tiling": ("tiling", False, bool),
    "Face restoration": ("face_restoration", False, bool), "Noise multiplier": ("initial_noise_multiplier", 1.0, float),
    "Extra noise": ("img2img_extra_noise", 0.0, float), "Sigma churn": ("s_churn", 0.0, float),
    "Sigma tmin": ("s_tmin", 0.0, float), "Sigma tmax": ("s_tmax", 0.0, float), "Sigma noise": ("s_noise", 1.0, float),
    "Schedule min sigma": ("sigma_min", 0.0, float), "Schedule max sigma": ("sigma_max", 0.0, float),
    "Schedule rho": ("rho", 0.0, float), "Token merging ratio": ("token_merging_ratio", 0.0, float),
    "Pad conds": ("pad_cond_uncond", False, bool), "NGMS": ("s_min_uncond", 0.0, float),
}  # fmt: skip


def _cast(value: Any, kind: type, label: str) -> Any:
    """A1111's `target_type(value)` (pydantic's field type), with a clear refusal where that raises."""
    if kind is bool:
        return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1")
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise EngineError(f"infotext: {label} is {value!r}, which is not a {kind.__name__}") from exc


def apply_infotext(data: dict[str, Any], task: str) -> dict[str, Any]:
    """A1111's Api.apply_infotext: the payload's `infotext` fills each field the payload does not set (its paste
    fields with an API name, for the task's tab), and `override_settings` with the settings it carries that differ
    from A1111's defaults, where the payload's own override_settings do not set them. Returns a new payload."""
    text = data.get("infotext")
    if not text:
        return data
    if not isinstance(text, str):
        raise EngineError("infotext must be a string (an A1111 infotext, as its PNG Info shows it)")
    fields: dict[str, Any] = {**PASTE_DEFAULTS, **parse_infotext(text)}
    filled = dict(data)
    for reader, key, kind in (*(TXT2IMG_FIELDS if task == "txt2img" else ()), *SCRIPT_FIELDS):
        if key in data:
            continue
        label = reader if isinstance(reader, str) else key
        value = fields.get(reader) if isinstance(reader, str) else reader(fields)
        if value is not None:
            filled[key] = _cast(value, kind, label)
    overrides = data.get("override_settings")
    overrides = dict(overrides) if isinstance(overrides, dict) else {}
    for label, (setting, default, kind) in SETTINGS.items():
        if label in fields and setting not in overrides:
            value = _cast(fields[label], kind, label)
            if value != default:
                overrides[setting] = value
    if overrides:
        filled["override_settings"] = overrides
    return filled
