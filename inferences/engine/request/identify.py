"""Which architecture a single-file checkpoint holds, read from its safetensors header alone (no torch, no weights).

diffusers' own `infer_diffusers_model_type` answers "v1" for anything it does not recognise (a LoRA, a bare VAE), so
the engine decides itself: each shipped config folder has a signature of tensor names and shapes that a checkpoint
of that architecture must carry, and a file that matches none is refused with a reason a person can act on.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import EngineError

MAX_HEADER_BYTES = 100 * 1024 * 1024

UNET = "model.diffusion_model."
SD1_TO_K = UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
SDXL_TO_K = UNET + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
CONV_IN = UNET + "input_blocks.0.0.weight"
SD1_CLIP = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SDXL_CLIP_G = "conditioner.embedders.1.model.token_embedding.weight"


@dataclass(frozen=True)
class Architecture:
    name: str  # the config folder's name
    family: str  # "sd1" or "sdxl": which pipeline classes load it
    label: str  # for people


SD15 = Architecture("sd15", "sd1", "Stable Diffusion 1.x")
SD1_TINY = Architecture("sd1-tiny", "sd1", "tiny Stable Diffusion 1.x (random weights, for tests and demos)")
SDXL = Architecture("sdxl", "sdxl", "Stable Diffusion XL")
SDXL_TINY = Architecture("sdxl-tiny", "sdxl", "tiny Stable Diffusion XL (random weights, for tests and demos)")
# the tiny SDXL has one ResNet per level, so its first attention block is input_blocks.3 (SDXL's is .4)
SDXL_TINY_TO_K = UNET + "input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight"

# name -> {tensor: shape} that a file must match exactly
SIGNATURES: dict[Architecture, dict[str, list[int]]] = {
    SD15: {CONV_IN: [320, 4, 3, 3], SD1_TO_K: [320, 768], SD1_CLIP: [49408, 768]},
    SD1_TINY: {CONV_IN: [32, 4, 3, 3], SD1_TO_K: [32, 32], SD1_CLIP: [49408, 32]},
    SDXL: {CONV_IN: [320, 4, 3, 3], SDXL_TO_K: [640, 2048], SDXL_CLIP_G: [49408, 1280]},
    SDXL_TINY: {CONV_IN: [32, 4, 3, 3], SDXL_TINY_TO_K: [64, 96], SDXL_CLIP_G: [49408, 64]},
}


def header_entries(path: Path) -> dict[str, dict[str, object]]:
    """The JSON header at the start of a .safetensors file: tensor name -> {dtype, shape, data_offsets}."""
    with path.open("rb") as handle:

        def read(start: int, length: int) -> bytes:
            handle.seek(start)
            return handle.read(length)

        return read_entries(path.name, read)


def read_entries(name: str, read: Callable[[int, int], bytes]) -> dict[str, dict[str, object]]:
    """The same from any reader of byte ranges, `read(start, length)`: a local file, or the object store (the API
    reads a stored checkpoint's header without fetching the file)."""
    head = read(0, 8)
    if len(head) < 8:
        raise EngineError(f"{name} is not a safetensors file (it is {len(head)} bytes long)")
    (length,) = struct.unpack("<Q", head)
    if length > MAX_HEADER_BYTES:
        raise EngineError(f"{name} is not a safetensors file (its header cannot be read)")
    try:
        header = json.loads(read(8, length))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EngineError(f"{name} is not a safetensors file (its header is not JSON)") from exc
    if not isinstance(header, dict):
        raise EngineError(f"{name} is not a safetensors file (its header is not a JSON object)")
    return {key: entry for key, entry in header.items() if key != "__metadata__" and isinstance(entry, dict)}


def shapes_of(entries: dict[str, dict[str, object]]) -> dict[str, list[int]]:
    return {name: list(entry.get("shape", [])) for name, entry in entries.items()}  # type: ignore[call-overload]


def read_header(path: Path) -> dict[str, list[int]]:
    """Tensor name → shape, from the JSON header at the start of a .safetensors file."""
    return shapes_of(header_entries(path))


def identify(path: Path) -> Architecture:
    return identify_shapes(path.name, read_header(path))


def identify_shapes(name: str, shapes: dict[str, list[int]]) -> Architecture:
    for architecture, signature in SIGNATURES.items():
        if all(shapes.get(tensor) == shape for tensor, shape in signature.items()):
            return architecture
    raise EngineError(f"{name}: {_why_unknown(shapes)}")


def _why_unknown(shapes: dict[str, list[int]]) -> str:
    conv_in = shapes.get(CONV_IN)
    if conv_in is None:
        if any(name.startswith(("lora_", "lora_unet", "lora_te")) or ".lora_" in name for name in shapes):
            return "this is a LoRA, not a Stable Diffusion checkpoint; upload it as a Lora model"
        if any(name.startswith(("encoder.", "decoder.", "first_stage_model.")) for name in shapes):
            return "this is a VAE, not a Stable Diffusion checkpoint; upload it as a VAE model"
        if "emb_params" in shapes or "string_to_param.*" in shapes:
            return "this is a textual-inversion embedding, not a Stable Diffusion checkpoint"
        return "not a Stable Diffusion checkpoint in the single-file (A1111/LDM) layout: it has no UNet weights"
    if len(conv_in) == 4 and conv_in[1] == 9:
        return "inpainting checkpoints (9-channel UNet) are not supported yet; use a regular SD 1.x or SDXL model"
    to_k = shapes.get(SD1_TO_K)
    if to_k is not None and to_k[-1] == 1024:
        return "Stable Diffusion 2.x checkpoints are not supported; use an SD 1.x or SDXL model"
    if SD1_CLIP not in shapes and SDXL_CLIP_G not in shapes:
        return "the checkpoint has no text encoder weights (UNet-only files are not supported)"
    return "an architecture this server does not know (supported: Stable Diffusion 1.x and SDXL)"
