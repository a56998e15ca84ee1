"""Upscaler models: ESRGAN-family .safetensors files loaded with spandrel (without its torchvision-importing
architectures), run in tiles, found among the job's `Upscaler` models by extra-single-image and the hires fix; and
the checkpoint types ControlNet and Upscaler checked against their files at upload."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from checkpoints import files
from inferences.engine.devtools import testing
from inferences.engine.errors import EngineError
from inferences.engine.features.upscalers import load_upscaler, run_model
from inferences.engine.request.options import JobFiles

from .conftest import model_file, png_b64, red_disc


def picture(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png))


@pytest.fixture
def up_files(models) -> JobFiles:
    return JobFiles(upscalers=(models["esrgan"], models["compact"]))


@pytest.mark.parametrize(("key", "architecture"), [("esrgan", "ESRGAN"), ("compact", "RealESRGAN Compact")])
def test_spandrel_identifies_and_loads_each_family(models, key: str, architecture: str) -> None:
    descriptor = load_upscaler(models[key], torch.device("cpu"))
    assert descriptor.architecture.name == architecture and descriptor.scale == 2
    assert "torchvision" not in __import__("sys").modules
    assert run_model(descriptor, red_disc((40, 30))).size == (80, 60)


def test_a_fresh_process_loads_an_upscaler_first_time(models) -> None:
    """The first upscaler job of a new worker: nothing of spandrel imported yet (this process has it already)."""
    import subprocess
    import sys

    script = (
        "import sys, torch; from pathlib import Path; "
        "from inferences.engine.request.options import ModelFile; from inferences.engine.features.upscalers import load_upscaler; "
        f"d = load_upscaler(ModelFile(Path({str(models['esrgan'].path)!r}), 'x', '0' * 64), torch.device('cpu')); "
        "print(d.architecture.name, 'torchvision' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ESRGAN", "False"]


def test_a_high_scale_model_renders_at_the_size_asked_tile_by_tile(tmp_path, monkeypatch) -> None:
    """A scale-32 model asked for 1.5x: no 32x canvas (it was 16 bytes per pixel of it), tiles of bounded output."""
    from inferences.engine.features.upscalers import MAX_TILE_OUTPUT, upscale
    from inferences.engine.request.options import ModelFile

    path = testing.write_tiny_upscaler(tmp_path / "32x-Tiny.safetensors", kind="compact", scale=32)
    descriptor = load_upscaler(ModelFile(path, path.name, "0" * 64), torch.device("cpu"))
    assert descriptor.scale == 32
    tiles, canvases = [], []

    class Recorded:
        model, scale = descriptor.model, descriptor.scale

        def __call__(self, piece):
            result = descriptor(piece)
            tiles.append(tuple(result.shape[2:]))
            return result

    zeros = torch.zeros

    def recording_zeros(*size, **kwargs):
        canvases.append(size)
        return zeros(*size, **kwargs)

    monkeypatch.setattr(torch, "zeros", recording_zeros)
    upscaled = upscale(
        red_disc((80, 64)), 1.5, "32x-Tiny", lambda image, **limits: run_model(Recorded(), image, **limits)
    )
    monkeypatch.undo()
    assert upscaled.size == (120, 96)
    assert max(max(shape) for shape in tiles) <= MAX_TILE_OUTPUT  # 48-pixel tiles at 32x: 1,536 a side
    assert len(tiles) == 4  # 80 x 64 in 48-pixel tiles overlapping by 8
    assert max(size[-1] * size[-2] for size in canvases) == 120 * 96  # the canvas is the size asked, not 2560 x 2048
    full = run_model(descriptor, red_disc((80, 64)))
    assert full.size == (2560, 2048)  # without a limit the model's own scale, as before


def test_tiles_join_without_seams(models) -> None:
    descriptor = load_upscaler(models["compact"], torch.device("cpu"))
    image = red_disc((300, 220))
    whole = np.asarray(run_model(descriptor, image, tile=1024)).astype(int)
    tiled = np.asarray(run_model(descriptor, image, tile=64)).astype(int)  # 5 x 4 tiles, overlapping by 8
    assert tiled.shape == whole.shape == (440, 600, 3)
    # the compact net sees a few pixels around each one: feathered overlaps hide the tile edges
    assert np.abs(tiled - whole).mean() < 1.0 and np.abs(tiled - whole).max() < 48


def test_extra_single_image_runs_an_uploaded_upscaler(engine, up_files) -> None:
    payload = {
        "image": png_b64(red_disc((48, 40))),
        "resize_mode": 0,
        "upscaling_resize": 3,
        "upscaler_1": "2x-TinyESRGAN",
    }
    result = engine.run("extra-single-image", payload, up_files)
    lanczos = engine.run("extra-single-image", {**payload, "upscaler_1": "Lanczos"}, up_files)
    assert picture(result.images[0]).size == picture(lanczos.images[0]).size == (144, 120)
    assert result.images[0] != lanczos.images[0]
    assert result.info["html_info"] == "<p>Postprocess upscale to: 144x120, upscaler: 2x-TinyESRGAN</p>"


def test_a_second_upscaler_is_blended_in_by_its_visibility(engine, up_files) -> None:
    base = {"image": png_b64(red_disc((48, 40))), "upscaling_resize": 2}
    first = picture(engine.run("extra-single-image", {**base, "upscaler_1": "2x-TinyCompact"}, up_files).images[0])
    second = picture(engine.run("extra-single-image", {**base, "upscaler_1": "Nearest"}, up_files).images[0])
    blended = engine.run(
        "extra-single-image",
        {**base, "upscaler_1": "2x-TinyCompact", "upscaler_2": "Nearest", "extras_upscaler_2_visibility": 0.5},
        up_files,
    )
    expected = Image.blend(first.convert("RGB"), second.convert("RGB"), 0.5)
    assert np.array_equal(np.asarray(picture(blended.images[0]).convert("RGB")), np.asarray(expected))
    # upscaler_1 "None" upscales nothing, upscaler_2 included (A1111's extras return before either)
    untouched = engine.run(
        "extra-single-image",
        {**base, "upscaler_1": "None", "upscaler_2": "Nearest", "extras_upscaler_2_visibility": 0.5},
        up_files,
    )
    assert picture(untouched.images[0]).size == (48, 40)


def test_an_rgba_picture_keeps_its_alpha_through_a_model(engine, up_files) -> None:
    image = red_disc((32, 32)).convert("RGBA")
    image.putalpha(Image.new("L", (32, 32), 128))
    result = engine.run("extra-single-image", {"image": png_b64(image), "upscaler_1": "2x-TinyCompact"}, up_files)
    out = picture(result.images[0])
    assert out.mode == "RGBA" and out.size == (64, 64) and out.getchannel("A").getextrema() == (128, 128)


def test_a_missing_or_foreign_upscaler_is_a_clear_failure(engine, up_files, models) -> None:
    payload = {"image": png_b64(red_disc((32, 32))), "upscaler_1": "R-ESRGAN 4x+"}
    with pytest.raises(
        EngineError, match=r"upscaler_1 names 'R-ESRGAN 4x\+'.*Upscaler models are: 2x-TinyESRGAN, 2x-TinyCompact"
    ):
        engine.run("extra-single-image", payload, up_files)
    lora = JobFiles(upscalers=(models["lora"],))
    with pytest.raises(
        EngineError, match=r"the upscaler watercolor\.safetensors is not an architecture this server loads"
    ):
        engine.run("extra-single-image", {**payload, "upscaler_1": "watercolor"}, lora)


# --- checkpoint types checked against their files -------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path):
    from django.core.files.storage import FileSystemStorage

    from esd.storage import LocalStorage

    return LocalStorage(FileSystemStorage(location=tmp_path / "store"), "bucket", "http://127.0.0.1")


def stored(store, path: Path, kind: str) -> list[files.StoredFile]:
    store.write_stream(f"m/{path.name}", [path.read_bytes()])
    return files.ingest(store, folder="m", name=path.name, limit=1 << 30, kind=kind)


def test_controlnet_and_upscaler_checkpoints_must_hold_such_a_model(store, models, tmp_path: Path) -> None:
    for key in ("controlnet", "controlnet_diffusers"):
        assert stored(store, models[key].path, "ControlNet")[0].name == models[key].name
    for key in ("esrgan", "compact"):
        assert stored(store, models[key].path, "Upscaler")[0].name == models[key].name
    with pytest.raises(files.FileRejected, match="is not a ControlNet model: it has no hint-encoder weights"):
        stored(store, models["lora"].path, "ControlNet")
    with pytest.raises(files.FileRejected, match="is a Stable Diffusion checkpoint, not an upscaler model"):
        stored(store, models["checkpoint"].path, "Upscaler")
    with pytest.raises(files.FileRejected, match="is a ControlNet, not an upscaler model"):
        stored(store, models["controlnet"].path, "Upscaler")
    # other types keep accepting any well-formed safetensors file
    assert stored(store, models["lora"].path, "Lora")


def test_a_pth_controlnet_is_refused_pointing_at_the_safetensors_release() -> None:
    with pytest.raises(files.FileRejected, match=r"upload the model's \.safetensors release"):
        files.check_filename("control_v11p_sd15_canny.pth")


def test_the_tiny_writers_layouts_are_the_published_ones(tmp_path: Path) -> None:
    from inferences.engine.request.identify import read_header

    names = read_header(testing.write_tiny_controlnet(tmp_path / "a.safetensors"))
    assert "control_model.input_hint_block.0.weight" in names and "control_model.zero_convs.0.0.weight" in names
    assert "control_model.middle_block_out.0.weight" in names
    names = read_header(testing.write_tiny_upscaler(tmp_path / "b.safetensors"))
    assert "model.0.weight" in names  # ESRGAN's old-arch layout
    assert model_file(tmp_path / "b.safetensors").sha256
