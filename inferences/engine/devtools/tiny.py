"""Tiny random-weight SD 1.x and SDXL checkpoints: the real architectures at toy width, for demos, tests and
benchmarks.

`write_tiny_checkpoint` builds the modules from the shipped `sd1-tiny` or `sdxl-tiny` config folder with seeded
random weights and writes them in the single-file layout a user uploads, so the engine loads them exactly as it
loads a real model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..configs_path import config_folder
from .ldm import pipeline_to_ldm


def _config(folder: Path, part: str) -> dict[str, Any]:
    name = "scheduler_config.json" if part == "scheduler" else "config.json"
    data: dict[str, Any] = json.loads((folder / part / name).read_text())
    return {key: value for key, value in data.items() if not key.startswith("_") and key != "architectures"}


ARCHITECTURES = ("sd1", "sdxl")


def build_tiny_pipeline(seed: int = 0, arch: str = "sd1") -> Any:
    if arch == "sdxl":
        return build_tiny_sdxl_pipeline(seed)
    if arch != "sd1":
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, not {arch!r}")
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = config_folder("sd1-tiny")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**_config(folder, "unet"))
    vae = AutoencoderKL(**_config(folder, "vae"))
    text_encoder = CLIPTextModel(CLIPTextConfig(**_config(folder, "text_encoder")))
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=unet,
        scheduler=PNDMScheduler.from_pretrained(folder, subfolder="scheduler"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_sdxl_pipeline(seed: int = 0) -> Any:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = config_folder("sdxl-tiny")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**_config(folder, "unet"))
    vae = AutoencoderKL(**_config(folder, "vae"))
    text_encoder = CLIPTextModel(CLIPTextConfig(**_config(folder, "text_encoder")))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**_config(folder, "text_encoder_2")))
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"),
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler"),
    )


def write_checkpoint(pipe: Any, out: Path, *, half: bool = False, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Save `pipe` as one LDM-layout .safetensors file, written to a temporary name and renamed into place."""
    from safetensors.torch import save_file

    state = pipeline_to_ldm(pipe, torch.float16 if half else None)
    state.update(extra or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    save_file(state, str(partial), metadata={"format": "pt"})
    partial.replace(out)
    return out


def write_tiny_checkpoint(out: Path, *, seed: int = 0, half: bool = False, arch: str = "sd1") -> Path:
    # Real uploads carry training leftovers such as these; the loader must ignore them.
    extra = {"model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(0, dtype=torch.int32)}
    return write_checkpoint(build_tiny_pipeline(seed, arch), out, half=half, extra=extra)
