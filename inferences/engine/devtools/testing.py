"""Tiny model files for tests and benchmarks, built from seeded random weights (nothing is downloaded).

They have the layouts users upload: a kohya/A1111 LoRA, an A1111 embedding, a standalone LDM VAE, and an ONNX
background-removal model with U²-Net's input/output contract.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .ldm import vae_to_ldm
from .tiny import build_tiny_pipeline


def _save(state: dict[str, torch.Tensor], out: Path) -> Path:
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in state.items()}, str(out))
    return out


def write_tiny_vae(out: Path, *, seed: int = 7) -> Path:
    """A standalone VAE (bare LDM keys, as VAE downloads come) that differs from the tiny checkpoint's own."""
    return _save(vae_to_ldm(build_tiny_pipeline(seed).vae, prefix=""), out)


def _sgm_block(path: str, layers_per_block: int) -> str:
    """kohya's SDXL names follow the original (SGM) UNet: down_blocks.1.attentions.0 -> input_blocks.3.1 (with one
    ResNet per level), up_blocks.0.attentions.1 -> output_blocks.1.1, mid_block.attentions.0 -> middle_block.1."""
    parts = path.split(".")
    per_block = layers_per_block + 1
    if parts[0] == "down_blocks":
        head = f"input_blocks.{int(parts[1]) * per_block + int(parts[3]) + 1}.1"
        rest = parts[4:]
    elif parts[0] == "up_blocks":
        head = f"output_blocks.{int(parts[1]) * per_block + int(parts[3])}.1"
        rest = parts[4:]
    else:  # mid_block.attentions.0
        head, rest = "middle_block.1", parts[3:]
    return ".".join([head, *rest])


def write_tiny_lora(out: Path, *, seed: int = 3, rank: int = 4, scale: float = 0.5, arch: str = "sd1") -> Path:
    """A kohya-format LoRA (what A1111 users download) over the tiny model's UNet and text-encoder attention; for
    SDXL with kohya's SDXL names (SGM UNet blocks, `lora_te1`/`lora_te2` for the two text encoders)."""
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = build_tiny_pipeline(0, arch)
    torch.manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    text_names = ["q_proj", "k_proj", "v_proj", "out_proj"]
    targets = {"lora_unet": (pipe.unet, ["to_q", "to_k", "to_v", "to_out.0"])}
    if arch == "sdxl":
        targets.update(lora_te1=(pipe.text_encoder, text_names), lora_te2=(pipe.text_encoder_2, text_names))
    else:
        targets.update(lora_te=(pipe.text_encoder, text_names))
    for prefix, (module, names) in targets.items():
        module.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=names, init_lora_weights=False))
        for key, value in get_peft_model_state_dict(module).items():
            path, _, kind = key.rpartition(".lora_")
            if prefix.startswith("lora_te"):
                path = path.removeprefix("text_model.")
                path = "text_model." + path  # kohya names follow the original CLIP module tree
            elif arch == "sdxl":
                path = _sgm_block(path, pipe.unet.config.layers_per_block)
            name = f"{prefix}_{path.replace('.', '_')}"
            state[f"{name}.{'lora_down' if kind.startswith('A') else 'lora_up'}.weight"] = value * scale
            state[f"{name}.alpha"] = torch.tensor(float(rank))
    return _save(state, out)


def write_tiny_embedding(out: Path, *, vectors: int = 2, seed: int = 5) -> Path:
    """An A1111 textual-inversion embedding (`emb_params`) for the tiny text encoder's width."""
    width = build_tiny_pipeline(0).text_encoder.config.hidden_size
    generator = torch.Generator().manual_seed(seed)
    return _save({"emb_params": torch.randn(vectors, width, generator=generator)}, out)


def write_tiny_u2net(out: Path) -> Path:
    """An ONNX model with U²-Net's contract (input `input.1` 1x3x320x320, first output a 1x1x320x320 sigmoid map).

    It marks red pixels as foreground, so a test can check the mask, not just the plumbing.
    """

    class RedIsForeground(torch.nn.Module):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            red, green, blue = image[:, 0:1], image[:, 1:2], image[:, 2:3]
            return torch.sigmoid(8.0 * (red - (green + blue) / 2.0) - 2.0)

    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        RedIsForeground(),
        (torch.zeros(1, 3, 320, 320),),
        str(out),
        input_names=["input.1"],
        output_names=["mask"],
        dynamo=False,
    )
    return out


def write_tiny_controlnet(out: Path, *, arch: str = "sd1", layout: str = "ldm", seed: int = 11) -> Path:
    """A ControlNet for the tiny model's UNet, in the original layout (`control_model.*`, as lllyasviel's
    releases) or the diffusers layout. Its zero convolutions get random weights too: a real ControlNet's are
    trained away from zero, and zero ones would leave the picture unchanged."""
    from diffusers import ControlNetModel

    from .ldm import controlnet_to_ldm

    unet = build_tiny_pipeline(0, arch).unet
    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
    with torch.no_grad():
        for name, parameter in controlnet.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")):
                parameter.normal_(0.0, 0.5)
    state = controlnet_to_ldm(controlnet) if layout == "ldm" else controlnet.state_dict()
    return _save(state, out)


def write_tiny_upscaler(out: Path, *, kind: str = "esrgan", scale: int = 2, seed: int = 13) -> Path:
    """A random-weight upscaler in the layout its family ships: ESRGAN's RRDB net (old-arch `model.N` keys, as
    ESRGAN releases and 4x-UltraSharp) or Real-ESRGAN's SRVGG "compact" net (`body.N`)."""
    import importlib

    from ..features.upscalers import registry

    registry()  # enters spandrel without its torchvision-importing __init__
    torch.manual_seed(seed)
    if kind == "compact":
        compact = importlib.import_module("spandrel.architectures.Compact.__arch.SRVGG")
        net = compact.SRVGGNetCompact(num_feat=8, num_conv=2, upscale=scale)
    else:
        rrdb = importlib.import_module("spandrel.architectures.ESRGAN.__arch.RRDB")
        net = rrdb.RRDBNet(num_filters=8, num_blocks=1, scale=scale)
    with torch.no_grad():  # kept small: the picture stays near the input's colours
        for parameter in net.parameters():
            parameter.mul_(0.2)
    return _save(net.state_dict(), out)
