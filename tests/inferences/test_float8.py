"""ESD_ENGINE_DTYPE=fp8 (issue 28.5): refused where no float8 tensor cores are; the UNet's aligned linear layers
in float8 through torchao. Its fp8 GEMMs need an Ada or Hopper GPU, so on this CPU the worker's wiring runs with
torchao's weight-only float8 in place of the dynamic one: the same layers converted, the same Float8Tensor
weights, the same LoRA path; bench/gpu.sh measures the real one's speed and pixel difference."""

import sys

import numpy as np
import pytest
import torch

from inferences.engine.errors import EngineError
from inferences.engine.models import float8
from inferences.engine.request.options import EngineOptions, JobFiles
from inferences.engine.runner import Engine

from .conftest import txt2img
from .test_ksampling import png_pixels


def test_fp8_is_refused_where_there_are_no_float8_tensor_cores(models):
    engine = Engine(EngineOptions(dtype="fp8"))
    with pytest.raises(EngineError, match=r"fp8 needs a CUDA GPU .*compute capability 8.9.* runs on cpu"):
        engine.run("txt2img", txt2img(), JobFiles(checkpoint=models["checkpoint"]))


def test_fp8_without_torchao_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # what a worker without requirements-fp8.txt has
    with pytest.raises(EngineError, match=r"needs torchao.*pip install -r requirements-fp8.txt"):
        float8.check_installed()


def test_only_aligned_linear_layers_are_converted():
    assert float8.fits(torch.nn.Linear(320, 1280))
    assert not float8.fits(torch.nn.Linear(320, 1000))  # torchao's GEMM needs multiples of 16
    assert not float8.fits(torch.nn.Conv2d(320, 320, 3))


@pytest.fixture
def fp8_on_cpu(monkeypatch):
    """The fp8 worker's path on this CPU: the capability check passed, torchao's weight-only float8 config."""
    from torchao.quantization import Float8WeightOnlyConfig

    quantize, converted = float8.quantize_unet, []

    def weight_only(unet):
        converted.append((unet, quantize(unet, Float8WeightOnlyConfig())))
        return converted[-1][1]

    monkeypatch.setattr(float8, "check_device", lambda device: None)
    monkeypatch.setattr(float8, "quantize_unet", weight_only)
    return converted


def test_an_fp8_worker_runs_the_unets_linear_layers_in_float8(models, engine, fp8_on_cpu):
    from torchao.quantization import Float8Tensor

    fp8 = Engine(EngineOptions(dtype="fp8", cache_bytes=1024**3))
    files = JobFiles(checkpoint=models["checkpoint"])
    ours = png_pixels(fp8.run("txt2img", txt2img(seed=5), files).images[0])
    [(unet, count)] = fp8_on_cpu  # converted once, at load
    linears = {name: module for name, module in unet.named_modules() if isinstance(module, torch.nn.Linear)}
    aligned = [name for name, module in linears.items() if float8.fits(module)]
    assert count == len(aligned) > 0  # every aligned linear layer
    for name, module in linears.items():
        assert isinstance(module.weight, Float8Tensor) == (name in aligned)
    assert next(module for module in linears.values() if float8.fits(module)).weight.qdata.dtype == torch.float8_e4m3fn
    assert unet.conv_in.weight.dtype == torch.bfloat16  # the rest computes in bf16
    plain = png_pixels(engine.run("txt2img", txt2img(seed=5), files).images[0])
    difference = np.abs(ours.astype(int) - plain.astype(int))
    assert 0 < difference.mean() < 8  # float8's rounding, not another picture (the tiny model's range: 1-2 levels)


def test_a_lora_runs_beside_the_float8_layers_and_unloads(models, fp8_on_cpu):
    fp8 = Engine(EngineOptions(dtype="fp8", cache_bytes=1024**3))
    files = JobFiles(checkpoint=models["checkpoint"], loras=(models["lora"],))
    before = png_pixels(fp8.run("txt2img", txt2img(seed=6), files).images[0])
    with_lora = fp8.run("txt2img", txt2img(seed=6, prompt="a photo of a cat <lora:watercolor:0.8>"), files)
    assert "Lora hashes" in with_lora.pictures[0][1]
    assert not np.array_equal(png_pixels(with_lora.images[0]), before)
    assert np.array_equal(png_pixels(fp8.run("txt2img", txt2img(seed=6), files).images[0]), before)


def test_esd_check_device_says_what_an_fp8_worker_computes_in(fp8_on_cpu):
    from inferences.engine.models.device import describe

    assert describe(EngineOptions(dtype="fp8"))["dtype"] == "bfloat16 (the UNet's linear layers in float8)"
