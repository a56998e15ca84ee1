"""A1111's generation parameters text ("infotext"): the PNG `parameters` chunk and `info.infotexts[i]`.

Tools that read A1111 PNGs (the WebUI's PNG Info tab, civitai, ESD clients) parse this exact shape:
    <prompt>
    Negative prompt: <negative>
    Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 1234, Size: 512x512, Model hash: ..., Model: ..., Version: ...
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .features import masking
from .request.payload import Generation
from .request.samplers import SAMPLERS, label

if TYPE_CHECKING:
    from .models.loading import LoadedModel
    from .request.options import ModelFile

VERSION = "esd-server"


def quote(value: object) -> str:
    """A1111's infotext_utils.quote: a value holding `,`, `:` or a newline is written as a JSON string."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def infotext(
    request: Generation,
    model: LoadedModel,
    vae: ModelFile | None,
    seed: int,
    lora_hashes: list[str],
    subseed: int | None = None,
    control_notes: list[str] | None = None,
    hires_model: LoadedModel | None = None,
    gpu_noise: bool = False,
) -> str:
    """A1111's create_infotext (processing.py, v1.10.1), field for field and in its order, but `Version`.

    Its fixed fields come first, in the order of its dict literal; then `extra_generation_params` in the order A1111
    inserts them: the ControlNet units (the extension's `process`), the img2img or hires fields (`init`), `Lora
    hashes` (extra networks' activation), then what the sampler adds (`Eta`). A key of both keeps the literal's place
    (`Schedule type`, `Denoising strength`), as a Python dict does."""
    sampler, schedule = label(request.sampler, request.schedule)
    fixed: dict[str, object] = {
        "Steps": request.steps,
        "Sampler": sampler,
        "Schedule type": schedule,
        "CFG scale": request.cfg_scale,
        "Seed": seed,
        "Size": f"{request.width}x{request.height}",
        "Model hash": model.checkpoint.short_hash or None,
        "Model": model.checkpoint.stem,
        "VAE hash": vae.short_hash if vae else None,
        "VAE": vae.stem if vae else None,
        "Variation seed": subseed if request.subseed_strength else None,
        "Variation seed strength": request.subseed_strength or None,
        "Seed resize from": "{}x{}".format(*request.seed_resize_from) if request.seed_resize_from else None,
        "Denoising strength": (
            request.denoising_strength
            if request.task == "img2img"
            else request.hires.denoising_strength
            if request.hires is not None
            else None
        ),
        "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
        "ENSD": request.noise_seed_delta if _uses_ensd(request) else None,
        # A1111 writes RNG where its source is not its default GPU one; noise drawn on the CPU is labelled CPU here
        # even for the GPU source on a worker without CUDA, so that A1111 on a CUDA machine draws it again
        "RNG": None if gpu_noise else "CPU",
    }
    extra: dict[str, object] = {}
    for note in control_notes or []:
        key, _, value = note.partition(": ")
        extra[key] = value
    if request.task == "img2img" and request.mask is not None:
        extra |= _inpainting_fields(request)
    if request.hires is not None:
        extra |= _hires_fields(request, hires_model)
    if lora_hashes:
        extra["Lora hashes"] = ", ".join(lora_hashes)
    eta_field, eta_default = ("Eta", 1.0) if SAMPLERS[request.sampler].sigma_based else ("Eta DDIM", 0.0)
    if SAMPLERS[request.sampler].takes_eta and request.eta is not None and request.eta != eta_default:
        extra[eta_field] = request.eta
    fields = fixed | extra | {"Version": VERSION}
    line = ", ".join(
        key if key == value else f"{key}: {quote(value)}" for key, value in fields.items() if value is not None
    )
    negative = f"\nNegative prompt: {request.negative_prompt}" if request.negative_prompt else ""
    return f"{request.prompt}{negative}\n{line}".strip()


def _uses_ensd(request: Generation) -> bool:
    """A1111's is_sampler_using_eta_noise_seed_delta: ENSD is written for the samplers that draw noise with it (its
    `uses_ensd` option), unless eta is 0 (no noise drawn); an unset eta is the ancestral default, 1."""
    if not request.noise_seed_delta or not SAMPLERS[request.sampler].uses_ensd:
        return False
    return request.eta != 0


def _inpainting_fields(request: Generation) -> dict[str, object]:
    """What A1111's img2img `init` adds for a mask, in its order; a blank mask in "Only masked" mode stops after the
    blur (A1111 then runs plain img2img)."""
    assert request.mask is not None
    fields: dict[str, object] = {}
    if request.invert_mask:
        fields["Mask mode"] = "Inpaint not masked"
    if request.mask_blur_x > 0 or request.mask_blur_y > 0:
        # A1111's `mask_blur` property: one number when both directions agree, else none (the key is left out)
        fields["Mask blur"] = request.mask_blur_x if request.mask_blur_x == request.mask_blur_y else None
    if masking.drops_mask(request.mask, request.invert_mask, request.inpaint_full_res):
        return fields
    if request.inpaint_full_res:
        fields["Inpaint area"] = "Only masked"
        fields["Masked area padding"] = request.inpaint_padding
    fields["Masked content"] = {0: "fill", 2: "latent noise", 3: "latent nothing"}.get(request.inpainting_fill)
    return fields


def _hires_fields(request: Generation, hires_model: LoadedModel | None) -> dict[str, object]:
    """What A1111's txt2img `init` adds for the hires fix, in its order (processing.py: init, then
    calculate_target_resolution, then steps and upscaler); `Hires schedule type` holds its place from `init` and is
    filled in by the hires pass's get_sigmas (sd_samplers_kdiffusion.py)."""
    hires = request.hires
    assert hires is not None
    checkpoint = hires_model.checkpoint if hires_model is not None else None
    fields: dict[str, object] = {
        "Hires checkpoint": (
            (f"{checkpoint.stem} [{checkpoint.short_hash}]" if checkpoint.short_hash else checkpoint.stem)
            if checkpoint is not None
            else None
        ),
        "Hires sampler": hires.sampler_sent if hires.sampler_sent not in (None, request.sampler) else None,
        "Hires prompt": hires.prompt if hires.prompt is not None and hires.prompt != request.prompt else None,
        "Hires negative prompt": (
            hires.negative_prompt
            if hires.negative_prompt is not None and hires.negative_prompt != request.negative_prompt
            else None
        ),
        "Hires schedule type": _hires_schedule_type(request),
        "Hires upscale": hires.scale if hires.resize is None else None,
        "Hires resize": "{}x{}".format(*hires.resize) if hires.resize is not None else None,
        "Hires steps": hires.steps or None,
        "Hires upscaler": hires.upscaler if hires.upscaler_given else None,
    }
    return fields


def _hires_schedule_type(request: Generation) -> str | None:
    """The hires pass's schedule label where A1111 writes it: its sampler runs on k-diffusion with a schedule function
    (not "Automatic" without one), whose label is not the first pass's written `Schedule type`."""
    hires = request.hires
    assert hires is not None
    sampler = hires.sampler or request.sampler
    schedule = hires.schedule if hires.sampler is not None else request.schedule
    if not SAMPLERS[sampler].sigma_based:
        return None
    _, second = label(sampler, schedule)
    first = label(request.sampler, request.schedule)[1] if SAMPLERS[request.sampler].sigma_based else None
    # "Automatic" runs no schedule function (nothing written); the first pass's label is not written twice
    return None if second in ("Automatic", first) else second
