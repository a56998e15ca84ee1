"""Batch invariance: an image's numbers must not depend on which other images share its UNet call.

Dynamic batching runs several users' jobs through one UNet call, and promises each the picture it gets alone. On
CPU in fp32 every UNet operation gives each row the same result at any batch size of 2 or more (measured on the
tiny SD 1.x and SDXL models, 2 to 32 rows), except matrix products of 2-D inputs, whose kernels change their
summation order with the row count: the time embedding and the per-ResNet time projections. So:

- the time embedding runs on one row: every UNet call this engine makes has one timestep for the whole batch
  (k-diffusion's `sigma * s_in`, diffusers' scalar `t`), so its rows are equal, and the ResNets broadcast the
  single row; one row is also less work, on any device;
- where the rows differ (SDXL adds each prompt's pooled text and size to it), the time projections run row by row
  on CPU. CUDA's kernels make no such promise at any size (cuBLAS chooses per shape), so there batching keeps the
  images equal to the last bits only, as A1111's own batch_size does, and these loops are not added.

A batch of one image (a CFG call split in two, when the prompt's and the negative prompt's token counts differ)
takes other convolution kernels; dynamic batching therefore never puts such a job with others.
"""

from __future__ import annotations

import types
from typing import Any

import torch


def _first_row(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0][:1], *args[1:])


def _row_by_row(module: torch.nn.Module) -> None:
    forward = module.forward

    def each_row(self: torch.nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if x.ndim != 2 or x.shape[0] == 1:
            return forward(x, *args, **kwargs)
        return torch.cat([forward(x[row : row + 1], *args, **kwargs) for row in range(x.shape[0])])

    # the instance's own forward: the module keeps its name and weights, so LoRA loading maps onto it unchanged
    module.forward = types.MethodType(each_row, module)  # type: ignore[method-assign]


def make_batch_invariant(unet: Any, device: torch.device) -> None:
    if getattr(unet, "_esd_batch_invariant", False):
        return
    unet.time_embedding.register_forward_pre_hook(_first_row)
    if device.type == "cpu" and getattr(unet, "add_embedding", None) is not None:
        for name, module in unet.named_modules():
            if name.endswith("time_emb_proj") or name.startswith("add_embedding.linear_"):
                _row_by_row(module)
    unet._esd_batch_invariant = True
