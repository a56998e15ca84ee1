"""ESD_ENGINE_DTYPE=fp8 (issue 28.5, off by default): the UNet's linear layers as float8 matmuls through torchao.

torchao's dynamic float8 quantization stores each weight in float8 (e4m3, one scale per output row) and scales each
activation to float8 as it comes, so the attention and feed-forward GEMMs run on the tensor cores' fp8 path
(Ada and Hopper: compute capability 8.9 and up) at twice their bf16 rate. Everything else (convolutions, norms,
the text encoders, the VAE, ControlNets) runs in bf16, the compute dtype of an fp8 worker. Pictures differ from
fp16's by the float8 rounding: `bench/gpu.sh` reports the speed and the pixel difference side by side. torchao is
installed apart (requirements-fp8.txt), on the workers that use it.

LoRAs run beside the float8 layers: peft wraps a torchao layer in its TorchaoLoraLinear, which adds the adapter's
output to the float8 layer's without merging it, so unloading it leaves the float8 weights as they were.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import EngineError

FP8 = "fp8"
COMPUTE_DTYPE = torch.bfloat16  # what an fp8 worker's activations and unquantized modules run in
CAPABILITY = (8, 9)  # the first CUDA architecture with float8 tensor cores (Ada); Hopper is 9.0
ALIGNMENT = 16  # torchao's float8 GEMMs need both sides of a weight in multiples of 16


def check_device(device: torch.device) -> None:
    """Refuse fp8 where no float8 tensor cores are: a worker started so would not be faster, only less exact."""
    if device.type != "cuda":
        raise EngineError(
            f"ESD_ENGINE_DTYPE=fp8 needs a CUDA GPU with float8 tensor cores (compute capability 8.9 or newer: "
            f"Ada, Hopper), and this worker runs on {device.type}; use auto, fp16, bf16 or fp32"
        )
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < CAPABILITY:
        raise EngineError(
            f"ESD_ENGINE_DTYPE=fp8 needs a GPU of compute capability 8.9 or newer (Ada, Hopper); "
            f"{torch.cuda.get_device_name(device)} is {major}.{minor}: use fp16 or bf16"
        )


def check_installed() -> None:
    """torchao is installed apart (requirements-fp8.txt): say so where it is missing."""
    try:
        import torchao  # noqa: F401
    except ImportError as exc:
        raise EngineError(
            "ESD_ENGINE_DTYPE=fp8 needs torchao, which this worker's environment lacks: "
            "install it with `.venv/bin/pip install -r requirements-fp8.txt`"
        ) from exc


def quantize_unet(unet: Any, config: Any = None) -> int:
    """Turn the UNet's linear layers into float8 ones in place (`config`: torchao's; dynamic float8 activations
    and per-row float8 weights by default); returns how many layers were converted."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    converted = [name for name, module in unet.named_modules() if fits(module)]
    quantize_(
        unet,
        config if config is not None else Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
        filter_fn=lambda module, _name: fits(module),
    )
    return len(converted)


def fits(module: torch.nn.Module) -> bool:
    """A layer torchao's float8 GEMMs take: a linear one with both sides aligned."""
    return (
        isinstance(module, torch.nn.Linear)
        and module.in_features % ALIGNMENT == 0
        and module.out_features % ALIGNMENT == 0
    )
