"""What each sampler's loop asks of a GPU around its UNet calls, counted without a GPU.

    .venv/bin/python bench/host_waits.py [--steps 10]

Each of A1111's samplers runs through the engine's `ksampling.sample` over latents on PyTorch's meta device, a
GPU's stand-in with shapes but no values (inferences/engine/devtools/meta_device.py), for a txt2img job of two
images. Counted per step, outside the UNet (a stand-in): the kernels the loop would queue on the device (operations
whose output lives there, views left out) and the times the host would wait for the device (a value read back:
`.item()`, `float()`, `if tensor:`, a boolean mask, a copy to the host, linalg.solve's error check), answered with
stand-in values so that a loop that reads runs on and is counted. Per step = (count at 2 x --steps - count at
--steps) / --steps, so what a job does once cancels out.

The reads before 0.14.1, with the sigma schedule (and A1111's timesteps and alphas_cumprod) on the device, as
A1111 keeps them, are in docs/benchmarks.md: this script counted them at commit c0e8cbe with the schedule moved to
the device, which `ksampling.sample` has since brought back to the host before its loop.

On a GPU a read stalls the host until the device has run everything queued, so the device idles while the host
queues the next step; with CUDA graphs (ESD_ENGINE_COMPILE=reduce-overhead) the UNet is one launch and these
kernels are most of the rest. Not a test: tests/inferences/test_host_waits.py holds the host placement at no reads.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from inferences.engine.devtools.meta_device import (
    DEVICE,
    SD1_SCHEDULE,
    BrownianStandIn,
    DeviceNoise,
    StandInUNet,
    device_conditioning,
    host_schedule,
)
from inferences.engine.request.samplers import SAMPLERS
from inferences.engine.sampling import ksampling

READS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.is_nonzero.default,
    torch.ops.aten.item.default,
    torch.ops.aten._linalg_check_errors.default,
}
MASKED = {torch.ops.aten.index.Tensor, torch.ops.aten.index_put.default, torch.ops.aten.index_put_.default}
SKIPPED = {  # they read the device each step by design
    "DPM fast": "k-diffusion's DPM-Solver reads its time grid on the device each step (with eta, A1111's 1.0)",
    "DPM adaptive": "its step sizes follow an error measured on the device: as many reads as it takes",
}


class Counter(TorchDispatchMode):
    """Counts device kernels and host reads outside the stand-in UNet; answers reads with stand-in values."""

    def __init__(self, unet: StandInUNet) -> None:
        super().__init__()
        self.unet = unet
        self.kernels = 0
        self.reads = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        on_device = [arg for arg in args if isinstance(arg, torch.Tensor) and arg.device == DEVICE]
        if func in READS and on_device:
            self.reads += not self.unet.inside
            if func is torch.ops.aten._linalg_check_errors.default:
                return None
            tensor = on_device[0]
            return False if tensor.dtype == torch.bool else 0.5 if tensor.dtype.is_floating_point else 1
        if func in MASKED and any(_is_device_mask(index) for index in args[1]):
            self.reads += not self.unet.inside  # a boolean mask's row count is read back (nonzero)
        if func is torch.ops.aten._to_copy.default and on_device and kwargs.get("device") == torch.device("cpu"):
            self.reads += not self.unet.inside  # a copy to the host: its values are stand-ins
            return torch.full(args[0].shape, 0.5, dtype=kwargs.get("dtype") or args[0].dtype)
        result = func(*args, **kwargs)
        outputs = result if isinstance(result, (tuple, list)) else [result]
        if (
            not self.unet.inside
            and not func.is_view
            and any(isinstance(out, torch.Tensor) and out.device == DEVICE for out in outputs)
        ):
            self.kernels += 1
        return result


def _is_device_mask(index: Any) -> bool:
    return isinstance(index, torch.Tensor) and index.dtype == torch.bool and index.device == DEVICE


def loop_counts(name: str, steps: int) -> tuple[int, int]:
    """(kernels, reads) of one two-image txt2img loop of `steps` steps."""
    unet = StandInUNet()
    denoiser = ksampling.denoiser(unet, SD1_SCHEDULE)
    sigmas = host_schedule(name, steps)
    noise = DeviceNoise(2)
    with Counter(unet) as counter:
        ksampling.sample(
            model_denoiser=denoiser, name=name, sigmas=sigmas, x=ksampling.start_from_noise(name, sigmas, noise.next()),
            noise=noise, conditioning=device_conditioning(2), cfg_scale=7.0, seeds=[1, 2],
            callback=lambda step, denoised: None, from_noise=True,
        )  # fmt: skip
    return counter.kernels, counter.reads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    sampling, _ = ksampling.k_diffusion()
    sampling.BrownianTreeNoiseSampler = BrownianStandIn  # torchsde draws with generators the meta device has not
    torch.fx.experimental._config.meta_nonzero_assume_all_nonzero = True  # a mask's stand-in answer: all rows
    print(f"per step, outside the UNet, two images ({args.steps} vs {2 * args.steps} steps)")
    print(f"{'sampler':<18} {'device kernels':>14} {'host reads':>10}")
    for name in SAMPLERS:
        if name in SKIPPED:
            print(f"{name:<18} skipped: {SKIPPED[name]}")
            continue
        short, long = loop_counts(name, args.steps), loop_counts(name, 2 * args.steps)
        kernels, reads = ((b - a) / args.steps for a, b in zip(short, long, strict=True))
        print(f"{name:<18} {kernels:14.1f} {reads:10.1f}")


if __name__ == "__main__":
    main()
