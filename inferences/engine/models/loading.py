"""Single-file checkpoints (A1111/LDM layout) → diffusers pipelines, offline, with the shipped config folders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..configs_path import config_folder
from ..errors import EngineError, first_line
from ..request.identify import Architecture, identify
from ..request.options import EngineOptions, ModelFile
from .device import module_bytes, torch_dtype, tune


@dataclass
class LoadedModel:
    """One checkpoint (+ VAE) on its device: `base`, its diffusers pipeline, holds the modules the engine's loop runs
    on for txt2img, img2img and inpainting alike (generate.py)."""

    architecture: Architecture
    checkpoint: ModelFile
    vae: ModelFile | None
    base: Any
    size_bytes: int


def load_model(checkpoint: ModelFile, vae: ModelFile | None, options: EngineOptions) -> LoadedModel:
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # "Loading pipeline components" / "Loading weights" bars would flood the worker's log
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()

    architecture = identify(checkpoint.path)
    folder = str(config_folder(architecture.name))
    dtype = torch_dtype(options)
    common: dict[str, Any] = {"config": folder, "local_files_only": True, "torch_dtype": dtype}
    kwargs: dict[str, Any] = dict(common)
    if vae is not None:
        try:
            kwargs["vae"] = AutoencoderKL.from_single_file(str(vae.path), subfolder="vae", **common)
        except Exception as exc:  # diffusers raises bare Exceptions/KeyErrors for files it cannot map
            raise EngineError(
                f"the VAE {vae.name} could not be loaded for {architecture.label}: {first_line(exc)}"
            ) from exc
    if architecture.family == "sd1":
        pipeline_class: Any = StableDiffusionPipeline
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    else:
        pipeline_class = StableDiffusionXLPipeline
    try:
        pipe = pipeline_class.from_single_file(str(checkpoint.path), **kwargs)
    except Exception as exc:
        raise EngineError(f"{checkpoint.name} could not be loaded as {architecture.label}: {first_line(exc)}") from exc
    pipe = tune(pipe, options)
    if getattr(pipe.vae.config, "force_upcast", False) and dtype == torch.float16:
        # SDXL's VAE overflows in fp16 (black or NaN pictures): A1111's --no-half-vae, always
        pipe.vae.to(torch.float32)
    return LoadedModel(architecture, checkpoint, vae, pipe, module_bytes(pipe))
