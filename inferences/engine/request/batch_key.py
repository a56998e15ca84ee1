"""Which txt2img jobs may share one denoising loop (dynamic batching), read from the request alone (no torch).

Jobs share a loop when everything that is one value per UNet call agrees: the sampler and its schedule, steps and
size, clip skip, VAE and checkpoint choice, the LoRA set and weights, and the noise options A1111 applies to the
whole batch. What each image has of its own stays per job: prompts, negative prompts, embeddings, seeds and CFG
scale. A job that runs more than the loop (n_iter > 1, ControlNet, the hires fix) or whose sampler adapts its
steps to the batch it is in (DPM adaptive) runs alone: its key is "".
"""

from __future__ import annotations

import hashlib
import json

from .job_models import JobModels
from .payload import Generation
from .prompts import is_composable
from .samplers import SAMPLERS, effective_schedule

ALONE = ""


def batch_key(request: Generation, models: JobModels) -> str:
    """The key a job is planned with: jobs with equal keys share a loop (the same model, VAE and LoRA files too)."""
    sampler = SAMPLERS[request.sampler]
    if (
        request.task != "txt2img"
        or request.n_iter != 1
        or request.control_units
        or request.hires is not None
        or sampler.function == "sample_dpm_adaptive"  # its step sizes follow the whole batch's error
        or is_composable(request.text)  # AND: its own guidance over several sub-prompts
    ):
        return ALONE
    loras: dict[str, float] = {}
    for tag in request.networks:
        if tag.kind == "lora":
            loras[tag.name] = loras.get(tag.name, 0.0) + tag.weight
    shared = [
        request.task,
        request.sampler,
        effective_schedule(request.sampler, request.schedule),
        request.steps,
        request.width,
        request.height,
        request.clip_skip,
        request.clip_l_skip,
        request.vae,
        request.checkpoint_name,
        request.eta,
        request.noise_seed_delta,
        request.noise_source,
        request.subseed_strength,
        request.seed_resize_from,
        sorted(loras.items()),
        [file.sha256 or file.name for file in (models.checkpoint, models.vae) if file is not None],
        sorted((lora.file.sha256 or lora.file.name, lora.weight) for lora in models.loras),
    ]
    return hashlib.sha256(json.dumps(shared, default=str).encode()).hexdigest()[:40]
