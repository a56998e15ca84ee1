"""The sampling loop never makes the host wait for the device between steps (issue 28: the GPU never waits).

A GPU runs what the host has queued. Each time the host reads a value computed on the device (`.item()`, `float()`,
`if tensor:`), it waits for everything queued before it, and the device then idles while the host queues the next
step: one such read a step stalls every step. The engine keeps the sigma schedule (and A1111's timesteps and
alphas_cumprod) on the host, so the samplers' per-step arithmetic over it (`if sigmas[i + 1] == 0`, sigma ratios) is
host-side, and only the latents' arithmetic is queued on the device.

Latents on PyTorch's meta device stand in for a GPU's here (devtools/meta_device.py): reading a meta tensor raises,
so a sampler that runs its whole loop on meta latents reads nothing back from the device.
"""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from inferences.engine.devtools.meta_device import (
    DEVICE,
    SD1_SCHEDULE,
    BrownianStandIn,
    DeviceNoise,
    StandInControlNet,
    StandInUNet,
    device_conditioning,
    host_schedule,
)
from inferences.engine.request.samplers import SAMPLERS
from inferences.engine.sampling import ksampling

# k-diffusion's DPM-Solver samplers keep their time grid on the latents' device and, with eta (A1111 gives them 1.0),
# compare it on the host each step; DPM adaptive chooses each step from an error measured on the device: by design
WAITS_BY_DESIGN = {"DPM fast", "DPM adaptive"}
STEPS = 6


class NoCopiesToTheDevice(TorchFunctionMode):
    """Fails on a copy of host data to the device (`torch.tensor(..., device=)`, `.to(device)`) once the loop has
    started (the UNet's first call): PyTorch waits for the device's queue after a blocking copy from pageable memory.
    (Copies the other way raise by themselves: a meta tensor has nothing to copy out.)"""

    def __init__(self, unet: StandInUNet) -> None:
        super().__init__()
        self.unet = unet

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if not self.unet.calls or not isinstance(result, torch.Tensor) or result.device != DEVICE:
            return result
        if func in (torch.tensor, torch.as_tensor, torch.asarray):
            source = args[0]
        elif func in (torch.Tensor.to, torch.Tensor.copy_):
            source = args[1] if func is torch.Tensor.copy_ else args[0]
        else:
            return result
        if not isinstance(source, torch.Tensor) or source.device.type == "cpu":
            raise AssertionError(f"{func.__name__}: host data copied to the device in the loop")
        return result


@pytest.fixture(autouse=True)
def brownian_stand_in(monkeypatch):
    sampling, _ = ksampling.k_diffusion()
    monkeypatch.setattr(sampling, "BrownianTreeNoiseSampler", BrownianStandIn)


def schedule(name: str) -> torch.Tensor:
    """The schedule the engine runs, handed over on the host (sigmas_for)."""
    sigmas = host_schedule(name, STEPS)
    assert sigmas.device.type == "cpu"
    return sigmas


@pytest.mark.parametrize("name", [name for name in SAMPLERS if name not in WAITS_BY_DESIGN])
@pytest.mark.parametrize("task", ["txt2img", "img2img"])
def test_no_sampler_reads_the_device_between_steps(name, task):
    unet = StandInUNet()
    denoiser = ksampling.denoiser(unet, SD1_SCHEDULE)
    assert denoiser.sigmas.device == DEVICE
    full = schedule(name)
    noise = DeviceNoise(2)
    if task == "txt2img":
        x, sigmas = ksampling.start_from_noise(name, full, noise.next()), full
    else:
        init = torch.zeros(2, 4, 8, 8, device=DEVICE)
        x, sigmas = ksampling.start_from_picture(name, denoiser, full, STEPS // 2, init, noise.next())
    seen: list[int] = []
    with NoCopiesToTheDevice(unet):
        latents = ksampling.sample(
            model_denoiser=denoiser, name=name, sigmas=sigmas, x=x, noise=noise, conditioning=device_conditioning(2),
            cfg_scale=7.0, seeds=[1, 2], callback=lambda step, denoised: seen.append(step),
            from_noise=task == "txt2img", schedule=full,
        )  # fmt: skip
    assert latents.device == DEVICE and latents.shape == (2, 4, 8, 8)
    assert unet.calls >= len(sigmas) - 2 and len(seen) >= len(sigmas) - 2  # the loop ran: DDIM ends a step early


def test_dpm_fast_still_reads_the_device_inside_its_loop():
    """The check above can fail: k-diffusion's DPM-Solver keeps its time grid on the latents' device and compares it
    on the host each step (with eta, which A1111 gives it), so on meta latents its loop raises at its first step."""
    unet = StandInUNet()
    denoiser = ksampling.denoiser(unet, SD1_SCHEDULE)
    full = schedule("DPM fast")
    noise = DeviceNoise(1)
    x, sigmas = ksampling.start_from_picture("DPM fast", denoiser, full, STEPS // 2, noise.next(), noise.next())
    with pytest.raises(RuntimeError, match="meta tensors"):
        ksampling.sample(
            model_denoiser=denoiser, name="DPM fast", sigmas=sigmas, x=x, noise=noise,
            conditioning=device_conditioning(1), cfg_scale=7.0, seeds=[1], callback=lambda step, denoised: None,
            schedule=full,
        )  # fmt: skip
    assert unet.calls == 0  # it read the device before its first model evaluation, inside the loop


def test_a_schedule_moved_to_the_device_is_brought_back_before_the_loop():
    """A caller that moves the schedule to the device costs one read before the loop, not one a step."""
    unet = StandInUNet()
    denoiser = ksampling.denoiser(unet, SD1_SCHEDULE)
    noise = DeviceNoise(1)
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
        ksampling.sample(
            model_denoiser=denoiser, name="DPM++ 2M", sigmas=schedule("DPM++ 2M").to(DEVICE), x=noise.next(),
            noise=noise, conditioning=device_conditioning(1), cfg_scale=7.0, seeds=[1],
            callback=lambda step, denoised: None, from_noise=True,
        )  # fmt: skip
    assert unet.calls == 0


@pytest.mark.parametrize("name", ["Euler a", "DPM++ 2M", "UniPC"])
def test_a_dynamic_batch_with_its_own_cfg_scales_and_a_controlnet_reads_nothing_back(name):
    """The GPU's default: jobs batched into one loop (per-row CFG scales, each job's own conditioning), here with a
    ControlNet unit guiding part of the steps."""
    unet = StandInUNet()
    denoiser = ksampling.denoiser(unet, SD1_SCHEDULE)
    full = schedule(name)
    shared = ksampling.SharedConditioning([device_conditioning(1), device_conditioning(2)], [1, 2], [True, True])
    cfg = torch.tensor([7.0, 4.0, 4.0], device=DEVICE)[:, None, None, None]  # before the loop, as batched.py does
    controlnet = StandInControlNet()
    unit = ksampling.ActiveControl(
        controlnet, torch.zeros(1, 3, 64, 64, device=DEVICE), 0.8, 0.0, 0.5, soft=True, cond_only=True
    )
    control = ksampling.ControlPass([unit], STEPS)
    noise = DeviceNoise(3)
    with NoCopiesToTheDevice(unet):
        latents = ksampling.sample(
            model_denoiser=denoiser, name=name, sigmas=full, x=ksampling.start_from_noise(name, full, noise.next()),
            noise=noise, conditioning=shared, cfg_scale=cfg, seeds=[1, 2, 3], callback=lambda step, denoised: None,
            control=control, from_noise=True,
        )  # fmt: skip
    assert latents.shape == (3, 4, 8, 8) and unet.calls >= STEPS - 1
    assert 0 < controlnet.calls < unet.calls  # it guided the first half of the steps
