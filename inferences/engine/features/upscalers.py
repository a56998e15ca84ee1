"""Upscalers as A1111 runs them: Lanczos and Nearest built in, ESRGAN-family models from the job's files (loaded
with spandrel, the library A1111 itself uses since 1.8), tiled so a large picture stays within memory.

spandrel's package `__init__` registers every architecture it knows, and two of them (LaMa inpainting and
RestoreFormer face restoration, neither an upscaler) import torchvision, which cannot install beside the CPU build
of torch. So, as for k-diffusion (ksampling.py), the package is entered without running `__init__`, and a registry
of its super-resolution architectures, in spandrel's own detection order, is built from its unchanged modules.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import EngineError, first_line
from ..request.options import ModelFile

LANCZOS = Image.Resampling.LANCZOS
# spandrel's super-resolution architectures, in its MAIN_REGISTRY order (specific detectors before ESRGAN's)
ARCHITECTURES = (
    ("Compact", "CompactArch"), ("SwiftSRGAN", "SwiftSRGANArch"), ("HAT", "HATArch"), ("Swin2SR", "Swin2SRArch"),
    ("SwinIR", "SwinIRArch"), ("OmniSR", "OmniSRArch"), ("RGT", "RGTArch"), ("DAT", "DATArch"),
    ("SPAN", "SPANArch"), ("RealCUGAN", "RealCUGANArch"), ("SAFMN", "SAFMNArch"), ("ATD", "ATDArch"),
    ("DRCT", "DRCTArch"), ("ESRGAN", "ESRGANArch"), ("PLKSR", "PLKSRArch"),
)  # fmt: skip
TILE = 192  # A1111's ESRGAN_tile and ESRGAN_tile_overlap defaults
OVERLAP = 8
# A side of one tile's output: a high-scale model takes smaller tiles (a scale-32 one 48 pixels, not 192, whose
# output alone would be 6,144 pixels a side, 450 MB of floats); scale 2 to 8 keep A1111's 192.
MAX_TILE_OUTPUT = 1536

_lock = threading.Lock()
_registry: Any = None


def registry() -> Any:
    """spandrel's ArchRegistry over the architectures above."""
    global _registry
    with _lock:
        if _registry is None:
            spec = importlib.util.find_spec("spandrel")
            if spec is None or not spec.submodule_search_locations:
                raise EngineError("the spandrel package is not installed (make installs requirements-nodeps.txt)")
            package = sys.modules.get("spandrel") or types.ModuleType("spandrel")
            package.__path__ = list(spec.submodule_search_locations)
            sys.modules.setdefault("spandrel", package)
            helpers = importlib.import_module("spandrel.__helpers.registry")
            built = helpers.ArchRegistry()
            for module, name in ARCHITECTURES:
                architecture = getattr(importlib.import_module(f"spandrel.architectures.{module}"), name)()
                built.add(helpers.ArchSupport.from_architecture(architecture))
            _registry = built
    return _registry


def load_upscaler(file: ModelFile, device: torch.device) -> Any:
    """spandrel's ImageModelDescriptor for the file, on `device` in fp32 (fp16 where the model supports it on CUDA)."""
    from safetensors.torch import load_file

    architectures = registry()  # first: it enters spandrel without its __init__, which imports torchvision
    canonicalize = importlib.import_module("spandrel.__helpers.canonicalize").canonicalize_state_dict
    helpers = importlib.import_module("spandrel.__helpers.registry")
    try:
        state = load_file(str(file.path))
    except Exception as exc:
        raise EngineError(f"the upscaler {file.name} cannot be read: {first_line(exc)}") from exc
    try:
        descriptor = architectures.load(canonicalize(state))
    except helpers.UnsupportedModelError as exc:
        raise EngineError(
            f"the upscaler {file.name} is not an architecture this server loads "
            f"(ESRGAN, Real-ESRGAN, Compact, SwinIR, HAT, DAT, SPAN, ...): {first_line(exc)}"
        ) from exc
    except Exception as exc:
        raise EngineError(f"the upscaler {file.name} could not be loaded: {first_line(exc)}") from exc
    if getattr(descriptor, "purpose", "SR") != "SR" or descriptor.input_channels != 3:
        raise EngineError(f"{file.name} is a {descriptor.architecture.name} model, not a 3-channel upscaler")
    half = device.type == "cuda" and descriptor.supports_half
    return descriptor.to(device).to(torch.float16 if half else torch.float32).eval()


def _starts(size: int, tile: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - OVERLAP))
    return [*starts, size - tile]


def _ramp(length: int, feather: int, start: bool, end: bool) -> torch.Tensor:
    """Weights along one side of a tile: rising over `feather` pixels at a side that overlaps a neighbour."""
    weights = torch.ones(length)
    ramp = torch.linspace(1.0 / (feather + 1), 1.0, feather) if feather else torch.ones(0)
    if start and feather:
        weights[:feather] = ramp
    if end and feather:
        weights[-feather:] = torch.minimum(weights[-feather:], ramp.flip(0))
    return weights


def run_model(
    descriptor: Any, image: Image.Image, tile: int = TILE, limit: tuple[int, int] | None = None
) -> Image.Image:
    """One pass of the model over the picture, in `tile`-pixel tiles overlapping by 8 (A1111's defaults), feathered
    where they overlap, so memory stays that of one tile whatever the picture's size. `limit`: the size the caller
    will bring the result down to; a model whose scale is more than that needs renders each tile straight at the
    scale needed (bicubic, antialiased), so the canvas is the size asked for, not the model's (a scale-32 model
    asked for 1.5x no longer holds a 32x canvas)."""
    parameter = next(descriptor.model.parameters())
    # np.array copies: torch wants a writable array
    pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None].float() / 255.0
    _, channels, height, width = pixels.shape
    scale = descriptor.scale
    out_scale = float(scale)
    if limit is not None:
        out_scale = min(out_scale, max(limit[0] / width, limit[1] / height, 1.0))
    tile = min(tile, max(16, MAX_TILE_OUTPUT // scale))
    out = torch.zeros(1, channels, round(height * out_scale), round(width * out_scale))
    weight = torch.zeros(1, 1, out.shape[2], out.shape[3])
    ys, xs = _starts(height, tile), _starts(width, tile)
    feather = round(OVERLAP * out_scale)
    with torch.inference_mode():
        for y in ys:
            for x in xs:
                piece = pixels[:, :, y : y + tile, x : x + tile]
                result = descriptor(piece.to(parameter.device, parameter.dtype)).float().cpu()
                tile_h, tile_w = piece.shape[2], piece.shape[3]
                top, left = round(y * out_scale), round(x * out_scale)
                h, w = round((y + tile_h) * out_scale) - top, round((x + tile_w) * out_scale) - left
                if (h, w) != (result.shape[2], result.shape[3]):
                    result = torch.nn.functional.interpolate(result, size=(h, w), mode="bicubic", antialias=True)
                mask = _ramp(h, feather, y > 0, y + tile < height)[:, None] * _ramp(w, feather, x > 0, x + tile < width)
                out[:, :, top : top + h, left : left + w] += result * mask
                weight[:, :, top : top + h, left : left + w] += mask
    upscaled = (out / weight).clamp(0, 1)
    array = (upscaled[0].permute(1, 2, 0).numpy() * 255.0).round().astype("uint8")
    return Image.fromarray(array)


def upscale(image: Image.Image, scale: float, name: str, model: Callable[..., Image.Image] | None) -> Image.Image:
    """A1111's Upscaler.upscale: run the upscaler until the picture is at least `scale` times larger (at most 3
    passes; Lanczos and Nearest scale exactly), then Lanczos to that size rounded down to a multiple of 8."""
    dest_w, dest_h = int((image.width * scale) // 8 * 8), int((image.height * scale) // 8 * 8)
    for attempt in range(3):
        if image.width >= dest_w and image.height >= dest_h and (attempt > 0 or scale != 1):
            break
        size = image.size
        if name == "Lanczos":
            image = image.resize((int(image.width * scale), int(image.height * scale)), LANCZOS)
        elif name == "Nearest":
            image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.NEAREST)
        elif name == "None" or model is None:
            break
        else:
            image = model(image, limit=(dest_w, dest_h))
        if size == image.size:
            break
    if image.size != (dest_w, dest_h):
        image = image.resize((dest_w, dest_h), LANCZOS)
    return image


def resize_with(
    image: Image.Image, width: int, height: int, name: str, model: Callable[..., Image.Image] | None
) -> Image.Image:
    """A1111's images.resize_image (resize mode 0) with an upscaler: upscale by the larger side ratio when that is
    above 1, then Lanczos to exactly `width` x `height`; "None" is Lanczos alone."""
    if name != "None":
        scale = max(width / image.width, height / image.height)
        if scale > 1.0:
            image = upscale(image, scale, name, model)
    if image.size != (width, height):
        image = image.resize((width, height), LANCZOS)
    return image
