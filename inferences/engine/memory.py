"""A generation's peak memory, estimated before it runs from the checkpoint's header, the size and the batch.

No torch here: the API server estimates at `start` (refusing a job that cannot fit a worker) and the worker again
before it loads the model, with its own device and dtype. The model: weights (every UNet, VAE and text-encoder
tensor at the compute dtype) plus the larger of the UNet's working set (classifier-free guidance doubles the batch)
and one VAE decode (images are decoded one at a time, and in tiles above `TILE_ABOVE_PIXELS`), plus the runtime's
own baseline. The coefficients were measured on CPU against peak RSS (`bench/memory_estimate.py`, README table);
they round up, so the estimate is an upper bound there.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from .configs_path import config_folder
from .errors import EngineError
from .identify import identify_shapes, shapes_of

GIB = 1024**3
# Measured (bench/memory_estimate.py): bytes of working set per latent pixel x UNet width x dtype byte, for the CFG
# batch; and per image pixel x VAE decoder width x dtype byte for one decode.
UNET_FACTOR = 24
VAE_FACTOR = 10
BASELINE_BYTES = 700 * 1024**2  # torch, diffusers and the worker's own Python, resident before any model
TILE_ABOVE_PIXELS = 1536 * 1536  # decode larger images in tiles (diffusers' tiled_decode), bounding the VAE's peak
MODEL_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conditioner.")
UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
VAE_CONV_OUT = "first_stage_model.decoder.conv_out.weight"


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a checkpoint, read from its safetensors header."""

    parameters: int  # UNet + VAE + text encoders
    unet_width: int  # channels of the UNet's first level
    vae_width: int  # channels of the VAE decoder's last level
    tile: int = 512  # the VAE's tile side when decoding in tiles

    @classmethod
    def of(cls, name: str, header: dict[str, dict[str, object]]) -> ModelShape:
        """From the header of checkpoint `name`, identified as one of the shipped architectures (whose config
        folder gives the VAE's tile); an unknown one is refused as loading it would be."""
        architecture = identify_shapes(name, shapes_of(header))
        vae_config = json.loads((config_folder(architecture.name) / "vae" / "config.json").read_text())
        return cls.from_header(header, tile=int(vae_config.get("sample_size", 512)))

    @classmethod
    def from_header(cls, header: dict[str, dict[str, object]], tile: int = 512) -> ModelShape:
        def numel(entry: dict[str, object]) -> int:
            shape = entry.get("shape", [])
            return math.prod(int(side) for side in shape) if isinstance(shape, list) else 0

        parameters = sum(
            numel(entry)
            for name, entry in header.items()
            if name.startswith(MODEL_PREFIXES) and isinstance(entry, dict)
        )
        unet, vae = header.get(UNET_CONV_IN, {}), header.get(VAE_CONV_OUT, {})
        unet_shape, vae_shape = unet.get("shape", [320]), vae.get("shape", [3, 128])
        return cls(parameters, int(unet_shape[0]), int(vae_shape[1]), tile)  # type: ignore[index]


def parameter_count(header: dict[str, dict[str, object]]) -> int:
    """Every tensor's elements in a safetensors header (an extra model a job loads: a ControlNet, a hires checkpoint)."""
    total = 0
    for entry in header.values():
        shape = entry.get("shape", []) if isinstance(entry, dict) else []
        total += math.prod(int(side) for side in shape) if isinstance(shape, list) else 0
    return total


@dataclass(frozen=True)
class Estimate:
    weights: int
    unet: int
    vae: int
    baseline: int = BASELINE_BYTES
    tiled: bool = False

    @property
    def total(self) -> int:
        return self.baseline + self.weights + max(self.unet, self.vae)

    def describe(self) -> str:
        return (
            f"about {gib(self.total)} (weights {gib(self.weights)}, UNet {gib(self.unet)}, "
            f"VAE decode {gib(self.vae)}{', tiled' if self.tiled else ''}, runtime {gib(self.baseline)})"
        )


def gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB"


def estimate(
    model: ModelShape, width: int, height: int, batch_size: int, dtype_bytes: int, extra_parameters: int = 0
) -> Estimate:
    """`extra_parameters`: the weights of the other models the job holds beside the checkpoint (ControlNets, a hires
    checkpoint), at the same dtype."""
    pixels = width * height
    tiled = pixels > TILE_ABOVE_PIXELS
    # a tile is decoded with its overlap (diffusers: a quarter of the tile each way)
    decoded = int((model.tile * 1.25) ** 2) if tiled else pixels
    return Estimate(
        weights=(model.parameters + extra_parameters) * dtype_bytes,
        unet=UNET_FACTOR * 2 * batch_size * (pixels // 64) * model.unet_width * dtype_bytes,
        vae=VAE_FACTOR * decoded * model.vae_width * dtype_bytes,
        tiled=tiled,
    )


def machine_memory() -> int:
    """This machine's physical memory (the default budget of a CPU worker, less a margin)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_budget(total: int) -> int:
    """What a worker may use of `total`: all but a margin of 10 % (at least 1 GiB) for the OS and other processes."""
    return max(0, total - max(GIB, total // 10))


def check_fits(job: Estimate, budget: int, where: str) -> None:
    if budget and job.total > budget:
        raise EngineError(
            f"this job needs {job.describe()}, more than the {gib(budget)} {where} "
            "(ESD_WORKER_MEMORY_BYTES); lower width/height or batch_size"
        )
