"""A1111's generation parameters text ("infotext"): the PNG `parameters` chunk and `info.infotexts[i]`.

Tools that read A1111 PNGs (the WebUI's PNG Info tab, civitai, ESD clients) parse this exact shape:
    <prompt>
    Negative prompt: <negative>
    Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 1234, Size: 512x512, Model hash: ..., Model: ..., Version: ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .request.payload import Generation
from .request.samplers import label

if TYPE_CHECKING:
    from .models.loading import LoadedModel
    from .request.options import ModelFile

VERSION = "esd-server"


def _quote(value: object) -> str:
    """A1111 quotes values that contain its separators."""
    text = str(value)
    return (
        text if not any(mark in text for mark in ',:"\n') else '"' + text.replace('"', '\\"').replace("\n", " ") + '"'
    )


def infotext(
    request: Generation,
    model: LoadedModel,
    vae: ModelFile | None,
    seed: int,
    index: int,
    lora_hashes: list[str],
    subseed: int | None = None,
    control_notes: list[str] | None = None,
    hires_model: LoadedModel | None = None,
) -> str:
    sampler, schedule = label(request.sampler, request.schedule)
    hires = request.hires
    fields: dict[str, object] = {
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
            else hires.denoising_strength
            if hires is not None
            else None
        ),
        "Mask blur": request.mask_blur_x if request.mask is not None else None,
        "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
        "ENSD": request.noise_seed_delta or None,
        "Batch size": request.batch_size if request.batch_size > 1 else None,
        "Batch pos": index % request.batch_size if request.batch_size > 1 else None,
        **(_hires_fields(request, hires_model) if hires is not None else {}),
        **{note.split(": ", 1)[0]: note.split(": ", 1)[1] for note in control_notes or []},
        "Lora hashes": ", ".join(lora_hashes) if lora_hashes else None,
        "Version": VERSION,
    }
    line = ", ".join(f"{key}: {_quote(value)}" for key, value in fields.items() if value is not None)
    negative = f"\nNegative prompt: {request.negative_prompt}" if request.negative_prompt else ""
    return f"{request.prompt}{negative}\n{line}"


def _hires_fields(request: Generation, hires_model: LoadedModel | None) -> dict[str, object]:
    """What A1111's txt2img adds to extra_generation_params for the hires fix."""
    hires = request.hires
    assert hires is not None
    fields: dict[str, object] = {
        "Hires upscale": hires.scale if hires.resize is None else None,
        "Hires resize": "{}x{}".format(*hires.resize) if hires.resize is not None else None,
        "Hires steps": hires.steps or None,
        "Hires upscaler": hires.upscaler,
        "Hires checkpoint": hires_model.checkpoint.stem if hires_model is not None else None,
    }
    if hires.sampler is not None:
        sampler, schedule = label(hires.sampler, hires.schedule)
        first, first_schedule = label(request.sampler, request.schedule)
        fields["Hires sampler"] = sampler if sampler != first else None
        fields["Hires schedule type"] = schedule if hires.schedule_given and schedule != first_schedule else None
    if hires.prompt is not None and hires.prompt != request.prompt:
        fields["Hires prompt"] = hires.prompt
    if hires.negative_prompt is not None and hires.negative_prompt != request.negative_prompt:
        fields["Hires negative prompt"] = hires.negative_prompt
    return fields
