"""ControlNet models from the job's files, and the units of a job made ready for the sampler.

A ControlNet file comes in the original layout (`control_model.*`, as lllyasviel's releases and A1111 users have
them) or in the diffusers layout (`controlnet_cond_embedding.*`, as most SDXL ControlNets ship). Either way its
structure is the base model's UNet encoder, so the model is built from the loaded checkpoint's UNet config (no
config file, nothing downloaded) and its weights checked strictly against it: a ControlNet for another
architecture is refused with both named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import EngineError, first_line
from ..request.controlnet_payload import ControlUnit
from ..request.identify import read_header
from ..request.options import ModelFile
from ..sampling.ksampling import ActiveControl
from . import preprocessors

ORIGINAL_MARKS = ("control_model.", "input_hint_block.", "time_embed.")
DIFFUSERS_MARK = "controlnet_cond_embedding.conv_in.weight"


def load_controlnet(file: ModelFile, unet: Any, label: str) -> Any:
    """The ControlNet in `file`, on the UNet's device and dtype, built to the UNet's structure."""
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint
    from safetensors.torch import load_file

    names = read_header(file.path)
    diffusers_layout = DIFFUSERS_MARK in names
    if not diffusers_layout and not any(name.startswith(ORIGINAL_MARKS) for name in names):
        raise EngineError(f"{file.name} is not a ControlNet model (no hint-encoder weights)")
    if not diffusers_layout and any("label_emb" in name for name in names):
        raise EngineError(
            f"the ControlNet {file.name} is an SDXL ControlNet in the original layout, which does not load yet; "
            "upload its diffusers-layout .safetensors release"
        )
    parameter = next(unet.parameters())
    with torch.device("meta"):
        model = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
    state = load_file(str(file.path), device=str(parameter.device))
    if not diffusers_layout:
        converted = convert_controlnet_checkpoint(state, dict(model.config))
        state = {key: value for key, value in converted.items() if value is not None}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise EngineError(
            f"the ControlNet {file.name} does not fit this checkpoint ({label}): {first_line(exc)}"
        ) from exc
    return model.to(parameter.device, parameter.dtype).eval()


@dataclass
class PreparedUnit:
    """A unit with its model loaded and its detected map made: what each sampling pass takes its hint from."""

    unit: ControlUnit
    model: Any
    file: ModelFile
    detected: Image.Image

    def active(
        self, width: int, height: int, device: torch.device, dtype: torch.dtype, *, second_pass: bool = False
    ) -> ActiveControl:
        """The unit for one pass at `width` x `height`: the map fitted to that size, as a [1, 3, H, W] tensor in
        0..1 (ControlNet's hint is not normalised to -1..1). Soft injection as the extension's hook.py decides it:
        a control mode other than Balanced, or a Canny or MLSD unit in a hires fix's second pass, where the extension
        forces it ("significantly reduces artifacts")."""
        fitted = preprocessors.fit(self.detected, width, height, self.unit.resize_mode)
        hint = torch.from_numpy(np.asarray(fitted.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
        return ActiveControl(
            model=self.model,
            hint=hint[None].to(device, dtype),
            weight=self.unit.weight,
            start=self.unit.guidance_start,
            end=self.unit.guidance_end,
            soft=self.unit.control_mode != 0 or (second_pass and self.forced_soft_in_hires),
            cond_only=self.unit.control_mode == 2,
        )

    @property
    def forced_soft_in_hires(self) -> bool:
        return "canny" in self.unit.module or "mlsd" in self.unit.module

    def runs_in(self, second_pass: bool) -> bool:
        """Whether it guides the first pass or a hires fix's second (the unit's hr_option)."""
        return self.unit.hr_option == "Both" or self.unit.hr_option == (
            "High res only" if second_pass else "Low res only"
        )


def prepare_units(
    units: list[ControlUnit],
    files: tuple[ModelFile, ...],  # each unit's model, in order (JobModels.controlnets)
    load: Callable[[ModelFile], Any],
    init_images: list[Image.Image],
    width: int,
    height: int,
    numpy_seed: int,
) -> list[PreparedUnit]:
    """Load each enabled unit's model (`load(file)`, cached by the caller) and detect its map; a unit of an img2img
    job without an image of its own takes the first init image, as the extension does."""
    prepared = []
    for unit, file in zip(units, files, strict=True):
        if unit.weight == 0:
            continue  # a unit at weight 0 adds nothing; skipping it keeps the picture bit-identical to none
        picture = unit.image if unit.image is not None else init_images[0]
        detected = preprocessors.detect(unit, picture, width, height, numpy_seed)
        prepared.append(PreparedUnit(unit, load(file), file, detected))
    return prepared
