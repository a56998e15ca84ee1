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
from typing import TYPE_CHECKING

from ..configs_path import config_folder
from ..errors import EngineError
from .identify import identify_shapes, shapes_of
from .payload import Generation, Removal, Upscale
from .prompts import composable

if TYPE_CHECKING:
    from collections.abc import Callable

    from .job_models import JobModels
    from .options import ModelFile

    Header = dict[str, dict[str, object]]
    HeaderOf = Callable[[ModelFile], Header]

GIB = 1024**3
# An upscaler model's run (upscalers.run_model): the output canvas, its weights, their quotient and the uint8 copy
# take this many bytes per output pixel; one tile's feature maps, FEATURE_COPIES maps of the model's widest layer at
# the tile's output size (at most UPSCALE_TILE_OUTPUT pixels a side), are alive at once.
UPSCALE_CANVAS_BYTES = 40
UPSCALE_FEATURE_COPIES = 4
UPSCALE_TILE_OUTPUT = 4 * 192  # upscalers.TILE at the common scale 4 (its MAX_TILE_OUTPUT bounds larger scales)
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


@dataclass(frozen=True)
class UpscalerShape:
    """What the estimate needs of an upscaler model (ESRGAN family), from its safetensors header."""

    parameters: int
    width: int  # channels of its widest layer

    @classmethod
    def from_header(cls, header: dict[str, dict[str, object]]) -> UpscalerShape:
        widths = [
            int(entry["shape"][0])  # type: ignore[index]
            for entry in header.values()
            if isinstance(entry, dict) and isinstance(entry.get("shape"), list) and len(entry["shape"]) == 4  # type: ignore[arg-type]
        ]
        return cls(parameter_count(header), max(widths, default=64))


def upscale_bytes(model: UpscalerShape, width: int, height: int) -> int:
    """One run of an upscaler model to `width` x `height` (its weights not included), in fp32 as it runs on CPU."""
    tile = min(UPSCALE_TILE_OUTPUT, max(width, height))
    return UPSCALE_CANVAS_BYTES * width * height + UPSCALE_FEATURE_COPIES * tile * tile * model.width * 4


def parameter_count(header: dict[str, dict[str, object]]) -> int:
    """Every tensor's elements in a safetensors header (an extra model a job loads: a ControlNet, a hires checkpoint)."""
    total = 0
    for entry in header.values():
        shape = entry.get("shape", []) if isinstance(entry, dict) else []
        total += math.prod(int(side) for side in shape) if isinstance(shape, list) else 0
    return total


def vae_decode_bytes(pixels: int, vae_width: int, dtype_bytes: int) -> int:
    """One image's VAE decode working set (VAE_FACTOR, measured by bench/memory_estimate.py)."""
    return VAE_FACTOR * pixels * vae_width * dtype_bytes


def decode_rows(images: int, per_image: int, free: int | None) -> int:
    """How many images one VAE decode call takes: as many as `free` bytes hold at `per_image` each, at least one and
    at most all; one where free memory is not known (issue 28.2)."""
    if free is None or per_image <= 0:
        return 1
    return max(1, min(images, free // per_image))


@dataclass(frozen=True)
class Estimate:
    weights: int
    unet: int
    vae: int
    baseline: int = BASELINE_BYTES
    tiled: bool = False
    upscale: int = 0  # an upscaler model's run (the hires fix between its passes, or extras)

    @property
    def total(self) -> int:
        return self.baseline + self.weights + max(self.unet, self.vae, self.upscale)

    def describe(self) -> str:
        upscale = f", upscaler {gib(self.upscale)}" if self.upscale else ""
        return (
            f"about {gib(self.total)} (weights {gib(self.weights)}, UNet {gib(self.unet)}, "
            f"VAE decode {gib(self.vae)}{', tiled' if self.tiled else ''}{upscale}, runtime {gib(self.baseline)})"
        )


def gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB"


def estimate(
    model: ModelShape,
    width: int,
    height: int,
    batch_size: int,
    dtype_bytes: int,
    extra_parameters: int = 0,
    upscale: int = 0,
    guidance_rows: int = 2,
) -> Estimate:
    """`extra_parameters`: the weights of the other models the job holds beside the checkpoint (JobModels.held), at the
    same dtype; `upscale`: an upscaler model's run between the hires fix's passes (upscale_bytes); `guidance_rows`: the
    UNet rows per image (cond and uncond; one more per sub-prompt of a composable prompt)."""
    pixels = width * height
    tiled = pixels > TILE_ABOVE_PIXELS
    # a tile is decoded with its overlap (diffusers: a quarter of the tile each way)
    decoded = int((model.tile * 1.25) ** 2) if tiled else pixels
    return Estimate(
        weights=(model.parameters + extra_parameters) * dtype_bytes,
        unet=UNET_FACTOR * guidance_rows * batch_size * (pixels // 64) * model.unet_width * dtype_bytes,
        vae=vae_decode_bytes(decoded, model.vae_width, dtype_bytes),
        tiled=tiled,
        upscale=upscale,
    )


@dataclass(frozen=True)
class MemoryNeeds:
    """What a job's peak depends on, read once from its models' headers (at start, into the job's plan). A worker
    evaluates it for its own dtype, and for the images of every job sharing its loop (dynamic batching)."""

    shape: ModelShape | None = None  # the checkpoint's; None: an extras job (upscaler models only)
    width: int = 0  # the largest picture the job denoises (the hires pass's, with hires fix)
    height: int = 0
    batch_size: int = 1
    extra_parameters: int = 0  # every model held beside the checkpoint (JobModels.held), at the job's dtype
    upscale: int = 0  # an upscaler model's run, its fp32 weights included (between hires passes, or extras)
    upscaler_parameters: int = 0  # extras: the upscaler models' weights, held together in fp32
    guidance_rows: int = 2  # UNet rows per image: cond and uncond, plus one per further sub-prompt (AND)

    def estimate(self, dtype_bytes: int, batch_size: int | None = None) -> Estimate:
        if self.shape is None:
            return Estimate(weights=self.upscaler_parameters * 4, unet=0, vae=0, upscale=self.upscale)
        return estimate(
            self.shape, self.width, self.height, batch_size or self.batch_size, dtype_bytes,
            self.extra_parameters, self.upscale, self.guidance_rows,
        )  # fmt: skip


def memory_needs(request: Generation | Removal | Upscale, models: JobModels, header_of: HeaderOf) -> MemoryNeeds | None:
    """A job's needs from its picked models' headers (`header_of` reads one: from the store at start, from local
    files when the engine runs a payload itself); None for background removal, whose rembg models are the
    deployment's."""
    if isinstance(request, Removal):
        return None
    if isinstance(request, Upscale):
        shapes = [UpscalerShape.from_header(header_of(upscaler.file)) for upscaler in models.upscalers]
        runs = [upscale_bytes(shape, request.width, request.height) for shape in shapes]
        return MemoryNeeds(upscale=max(runs, default=0), upscaler_parameters=sum(s.parameters for s in shapes))
    assert models.checkpoint is not None  # resolve_models refuses a generation without one
    shape = ModelShape.of(models.checkpoint.name, header_of(models.checkpoint))
    upscalers = {upscaler.file.name for upscaler in models.upscalers}
    upscale, extra = 0, 0
    for model in models.held():
        header = header_of(model)
        if model.name in upscalers:  # it runs in fp32 between the passes, after the first pass's working set
            upscaler = UpscalerShape.from_header(header)
            upscale = max(upscale, upscale_bytes(upscaler, *request.largest_size) + upscaler.parameters * 4)
        else:
            extra += parameter_count(header)
    texts = [request.text] + ([request.hires.text] if request.hires is not None and request.hires.text else [])
    rows = 1 + max(len(composable(text)) for text in texts)
    return MemoryNeeds(shape, *request.largest_size, request.batch_size, extra, upscale, guidance_rows=rows)


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
