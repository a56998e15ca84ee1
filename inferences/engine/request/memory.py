"""A generation's peak memory, estimated before it runs from the checkpoint's header, the size and the batch.

No torch here: the API server estimates at `start` (refusing a job that cannot fit a worker) and the worker again
before it loads the model, with its own device and dtype. The model: weights (every UNet, VAE and text-encoder
tensor at the compute dtype) plus the larger of the UNet's working set (classifier-free guidance doubles the batch)
and one VAE decode (images are decoded one at a time, and in tiles above `TILE_ABOVE_PIXELS`), plus the runtime's
own baseline. The coefficients were measured on CPU against peak RSS (`bench/memory_estimate.py`, README table);
they round up, so the estimate is an upper bound there.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..configs_path import config_folder
from ..errors import EngineError
from .identify import identify_shapes, shapes_of
from .model_names import mentioned_embeddings, names_model, pick_hires_checkpoint, pick_vae

if TYPE_CHECKING:
    from collections.abc import Callable

    from .options import JobFiles, ModelFile
    from .payload import Generation, Upscale

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


def held_models(request: Generation, files: JobFiles, checkpoint: ModelFile) -> list[ModelFile]:
    """Every model file a generation holds in memory beside `checkpoint`, each once: the hires checkpoint, the
    ControlNets, the prompt's LoRAs, its VAE file, the embeddings its prompts mention and the hires upscaler. The one
    list the API server (at start) and the worker (before loading) estimate from. A name the job lacks is skipped
    here: the job is refused where that name is used."""
    from .hires_payload import PIXEL_UPSCALERS

    held: dict[str, ModelFile] = {}

    def add(candidates: tuple[ModelFile, ...], name: str | None) -> None:
        found = next((each for each in candidates if name is not None and names_model(name, each.name)), None)
        if found is not None:
            hold(found)

    def hold(model: ModelFile | None) -> None:
        if model is not None and model.name != checkpoint.name:
            held.setdefault(model.name, model)

    hires = request.hires
    if hires is not None:
        hold(pick_hires_checkpoint(request, files, checkpoint))
        if not hires.latent and hires.upscaler not in PIXEL_UPSCALERS:  # an upscaler model runs between the passes
            add(files.upscalers, hires.upscaler)
    for unit in request.control_units:
        add(files.controlnets, unit.model)
    for tag in request.networks:
        if tag.kind == "lora":
            add(files.loras, tag.name)
    with contextlib.suppress(EngineError):  # a VAE the job lacks fails it where it is loaded, as it always has
        hold(pick_vae(request, files))
    for embedding in mentioned_embeddings(request, files):
        hold(embedding)
    return list(held.values())


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
) -> Estimate:
    """`extra_parameters`: the weights of the other models the job holds beside the checkpoint (held_models), at the
    same dtype; `upscale`: an upscaler model's run between the hires fix's passes (upscale_bytes)."""
    pixels = width * height
    tiled = pixels > TILE_ABOVE_PIXELS
    # a tile is decoded with its overlap (diffusers: a quarter of the tile each way)
    decoded = int((model.tile * 1.25) ** 2) if tiled else pixels
    return Estimate(
        weights=(model.parameters + extra_parameters) * dtype_bytes,
        unet=UNET_FACTOR * 2 * batch_size * (pixels // 64) * model.unet_width * dtype_bytes,
        vae=VAE_FACTOR * decoded * model.vae_width * dtype_bytes,
        tiled=tiled,
        upscale=upscale,
    )


def generation_estimate(
    request: Generation, files: JobFiles, checkpoint: ModelFile, header_of: HeaderOf, dtype_bytes: int
) -> Estimate:
    """A generation's peak, worked out the same way by the API server at start (headers read from the store) and by
    the worker before loading (headers read from its cached files): `header_of` is how each side reads one."""
    shape = ModelShape.of(checkpoint.name, header_of(checkpoint))
    upscale, extra = 0, 0
    for model in held_models(request, files, checkpoint):
        header = header_of(model)
        if model in files.upscalers:  # it runs in fp32 between the passes, after the first pass's working set
            upscaler = UpscalerShape.from_header(header)
            upscale = max(upscale, upscale_bytes(upscaler, *request.largest_size) + upscaler.parameters * 4)
        else:
            extra += parameter_count(header)
    return estimate(shape, *request.largest_size, request.batch_size, dtype_bytes, extra, upscale)


def extras_estimate(request: Upscale, files: JobFiles, header_of: HeaderOf) -> Estimate:
    """extra-single-image: the upscaler models' weights (fp32) and the larger of their runs; Lanczos and Nearest
    need nothing beyond the pictures."""
    from .model_names import find_model

    models = [
        UpscalerShape.from_header(header_of(find_model(files.upscalers, name, key=key, kind="Upscaler")))
        for _, name, key in request.named_models()
    ]
    runs = [upscale_bytes(model, request.width, request.height) for model in models]
    return Estimate(weights=sum(model.parameters for model in models) * 4, unet=0, vae=0, upscale=max(runs, default=0))


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
