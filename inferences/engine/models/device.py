"""Device and dtype choice, and the per-device settings that make a pipeline fast there."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import EngineError
from ..request.options import EngineOptions
from . import float8
from .compiling import compile_pipeline
from .invariance import share_time_embedding

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def torch_device(options: EngineOptions) -> torch.device:
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineError(f"this worker was started with --device {options.device}, but no CUDA device is available")
    return torch.device(options.device)


def torch_dtype(options: EngineOptions) -> torch.dtype:
    """The dtype a worker computes in (fp8 workers: bf16 around their float8 matmuls, float8.py)."""
    if options.dtype == "auto":
        # Half precision on GPUs; CPUs run fp32 (their fp16 kernels are slow and bf16 changes results by CPU model).
        return torch.float16 if options.device.startswith("cuda") else torch.float32
    if options.dtype == float8.FP8:
        float8.check_device(torch_device(options))
        float8.check_installed()
        return float8.COMPUTE_DTYPE
    if options.dtype not in DTYPES:
        raise EngineError(f"dtype must be auto, fp16, bf16, fp32 or fp8, not {options.dtype!r}")
    return DTYPES[options.dtype]


def set_threads(threads: int) -> None:
    """Cap torch's CPU threads. Several CPU workers on one host must share its cores: with every process using all
    of them, OpenMP's spinning threads fight and a 0.1 s job takes seconds (measured: 40x slower with 2 processes)."""
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def tune(pipe: Any, options: EngineOptions) -> Any:
    """Move a freshly loaded pipeline to its device and apply that device's speed settings.

    diffusers uses PyTorch's scaled-dot-product attention by default (flash/memory-efficient kernels on CUDA), so
    there is nothing to switch on for it; channels-last helps the UNet's convolutions on CUDA only.
    """
    device = torch_device(options)
    pipe.to(device)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            # Nothing here trains; and a LoRA's unload leaves its base weights so, which a compiled graph guards on
            component.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    pipe.vae.enable_slicing()  # one image at a time through the VAE: a batch's decode peaks at one image's
    share_time_embedding(pipe.unet)
    if device.type == "cuda":
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if options.vae_tiling:
        pipe.vae.enable_tiling()
    if device.type == "cuda" and options.fuse_qkv:
        pipe.fuse_qkv_projections()  # one projection GEMM instead of three per attention (loras() unfuses)
    if options.dtype == float8.FP8:
        float8.quantize_unet(pipe.unet)  # before compiling: the graphs trace the float8 matmuls
    compile_pipeline(pipe, options.compile, options.compile_backend, options.compile_cache)
    return pipe


def memory_budget(options: EngineOptions) -> int:
    """What one job may use on this worker's device: ESD_WORKER_MEMORY_BYTES, else the device's memory less a margin."""
    from ..request.memory import default_budget, machine_memory

    if options.memory_bytes:
        return options.memory_bytes
    device = torch_device(options)
    if device.type == "cuda":
        return default_budget(torch.cuda.get_device_properties(device).total_memory)
    return default_budget(machine_memory())


def module_bytes(pipe: Any) -> int:
    """Memory held by a pipeline's weights and buffers (what the pipeline cache budgets)."""
    unique = {id(component): component for component in pipe.components.values()}
    return sum(module_bytes_of(component) for component in unique.values() if isinstance(component, torch.nn.Module))


def module_bytes_of(module: torch.nn.Module) -> int:
    """Memory held by one module's weights and buffers."""
    return sum(tensor.numel() * tensor.element_size() for tensor in (*module.parameters(), *module.buffers()))


def release_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def describe(options: EngineOptions) -> dict[str, str]:
    """What a worker started with these options computes on: for `esd_check_device` and a person installing one."""
    device = torch_device(options)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    memory = memory_budget(options)
    return {
        "device": f"{device} ({name})",
        "dtype": str(torch_dtype(options)).removeprefix("torch.")
        + (" (the UNet's linear layers in float8)" if options.dtype == float8.FP8 else ""),
        "torch": f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})",
        "memory budget": f"{memory / 1024**3:.1f} GiB",
    }
