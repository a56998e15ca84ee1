"""Stand-ins for a GPU's models on PyTorch's meta device, to see what a sampling loop asks of a device without one.

A meta tensor has a shape, a dtype and a device but no values: operations on it cost nothing, and reading one on the
host (`.item()`, `float()`, `if tensor:`, `.cpu()`) raises, where on a GPU it would make the host wait for the device.
Mixing devices is checked as on a GPU: a 0-dim CPU tensor may meet meta tensors, any other CPU tensor may not. Used
by tests/inferences/test_host_waits.py and bench/host_waits.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from ..sampling import ksampling

DEVICE = torch.device("meta")
# SD 1.x's noise schedule, what ksampling.denoiser needs of a scheduler config
SD1_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


class StandInUNet(torch.nn.Module):
    """A UNet's interface: a prediction that depends on its inputs; counts its calls, and whether one is running
    (`inside`), so that what happens around it can be told from what happens in it."""

    def __init__(self, device: torch.device = DEVICE) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.full((), 0.1, device=device))
        self.calls = 0
        self.inside = False

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, **_: Any
    ) -> SimpleNamespace:
        self.calls += 1
        self.inside = True
        try:
            conditioning = encoder_hidden_states.mean(dim=(1, 2))[:, None, None, None]
            return SimpleNamespace(sample=sample * self.scale + conditioning + timestep[:, None, None, None] * 1e-4)
        finally:
            self.inside = False


class StandInControlNet(torch.nn.Module):
    """A ControlNet's interface: 12 down residuals and a mid one from its inputs; counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, *, controlnet_cond: torch.Tensor, **_: Any
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        self.calls += 1
        residual = x * controlnet_cond.mean(dim=(1, 2, 3))[:, None, None, None]
        return [residual] * 12, residual


class DeviceNoise:
    """The images' noise as a CUDA worker draws it by default (A1111's GPU source): on the device."""

    def __init__(self, images: int, shape: tuple[int, ...] = (4, 8, 8)) -> None:
        self.shape = (images, *shape)

    def next(self) -> torch.Tensor:
        return torch.randn(self.shape, device=DEVICE)


class BrownianStandIn:
    """k-diffusion's BrownianTreeNoiseSampler less torchsde, whose generators the meta device has not: it reads the
    times it is given with float(), as torchsde does, and draws noise on the latents' device."""

    def __init__(self, x: torch.Tensor, sigma_min: torch.Tensor, sigma_max: torch.Tensor, **_: Any) -> None:
        float(sigma_min), float(sigma_max)  # torchsde's BrownianInterval takes its ends as floats
        self.x = x

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        float(sigma), float(sigma_next)
        return torch.randn_like(self.x)


def host_schedule(name: str, steps: int) -> torch.Tensor:
    """The sigma schedule the engine runs sampler `name` over (ksampling.sigmas_for, on the host), for SD 1.x's noise
    levels: computed on a CPU twin of the model, as meta buffers hold no values to compute it from."""
    return ksampling.sigmas_for(ksampling.denoiser(StandInUNet(torch.device("cpu")), SD1_SCHEDULE), name, None, steps)


def device_conditioning(images: int) -> ksampling.Conditioning:
    """A prompt's and a negative prompt's conditioning for `images` images, on the device, for every step."""
    text = ksampling.TextCond(torch.zeros(images, 77, 32, device=DEVICE))
    return ksampling.Conditioning(cond=[(1000, text)], uncond=[(1000, text)])
