"""Batch invariance: an image's numbers must not depend on which other images share its sampling loop.

Dynamic batching runs several users' jobs through one loop, and a job of `batch_size` n promises image k the
picture of seed + k alone. On CPU both hold to the last bit, on any CPU, by construction rather than by measurement:
every UNet (and ControlNet) call holds the rows of one image only, its conditional and unconditional halves, which
is exactly the call that image makes in a lone job of one image. Same shapes and same values give the same kernels
and the same summation order, whatever instruction set torch, oneDNN and MKL pick on the machine. The rest of the
loop is per image already (each image's noise from its own generator or Brownian tree, the VAE decoding one image at
a time) or element-wise.

Why not whole batches made invariant op by op: which operations change their results with the row count depends on
the CPU. On an AMD Zen 5 (AVX-512) only the time embedding's and SDXL's time projections' 2-D matrix products did,
and hooks for those passed every test there; on an Intel Xeon with AVX-512 the pictures still differed (by a grey
level on one or two values in 12,288), from other kernels that torch, oneDNN and MKL choose there by the CPU
itself, which no environment variable reproduces elsewhere (so which ones is not known from here). `bench/batch_invariance.py` lists the operations that
differ on the machine it runs on, for each ATEN_CPU_CAPABILITY the CPU supports.

The cost is the batched GEMMs' efficiency on CPU, where batching is off by default (ESD_BATCH_WINDOW_MS) and a
model's own per-image work already fills the cores (docs/benchmarks.md measures it). On CUDA the whole batch goes
through one call: cuBLAS and cuDNN choose kernels per shape and promise no invariance at any size, so there a
batched picture may differ from its lone one in the last bits, as an A1111 batch does, and nothing claims more.

The time embedding always runs on one row: every UNet call this engine makes has one timestep for its whole batch
(k-diffusion's `sigma * s_in`, diffusers' scalar `t`), so its rows are equal and the ResNets broadcast the one row.
"""

from __future__ import annotations

from typing import Any

import torch


def calls_per_image(device: torch.device) -> bool:
    """Whether the UNet runs one image's rows per call on `device` (see the module's docstring)."""
    return device.type == "cpu"


def _first_row(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0][:1], *args[1:])


def share_time_embedding(unet: Any) -> None:
    """Compute the UNet's time embedding on one row (all rows share the timestep)."""
    if getattr(unet, "_esd_time_embedding_shared", False):
        return
    unet.time_embedding.register_forward_pre_hook(_first_row)
    unet._esd_time_embedding_shared = True
