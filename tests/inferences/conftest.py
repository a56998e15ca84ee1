"""Tiny random-weight model files, built once per test session (nothing is downloaded), and one engine."""

import base64
import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from inferences.engine.request.options import EngineOptions, JobFiles, ModelFile

from .jobs import deploy


def model_file(path: Path) -> ModelFile:
    return ModelFile(path=path, name=path.name, sha256=hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.fixture(scope="session", autouse=True)
def _no_listener_left(django_db_setup):
    """The Real-time wait's LISTEN connection must be gone before the test database is dropped."""
    yield
    from inferences.completion import stop_listener

    stop_listener()


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelFile]:
    from inferences.engine.devtools import testing
    from inferences.engine.devtools.tiny import write_tiny_checkpoint

    folder = tmp_path_factory.mktemp("models")
    paths = {
        "checkpoint": write_tiny_checkpoint(folder / "tiny-sd1.safetensors", seed=0),
        "other": write_tiny_checkpoint(folder / "tiny-other.safetensors", seed=1),
        "half": write_tiny_checkpoint(folder / "tiny-half.safetensors", seed=0, half=True),
        "vae": testing.write_tiny_vae(folder / "blue-vae.safetensors"),
        "lora": testing.write_tiny_lora(folder / "watercolor.safetensors"),
        # "style" is an ordinary CLIP word: A1111 still activates an embedding of that name
        "embedding": testing.write_tiny_embedding(folder / "style.safetensors"),
        "controlnet": testing.write_tiny_controlnet(folder / "control_tiny_canny.safetensors"),
        "controlnet_diffusers": testing.write_tiny_controlnet(
            folder / "tiny-depth-diffusers.safetensors", layout="diffusers", seed=12
        ),
        "esrgan": testing.write_tiny_upscaler(folder / "2x-TinyESRGAN.safetensors"),
        "compact": testing.write_tiny_upscaler(folder / "2x-TinyCompact.safetensors", kind="compact"),
    }
    return {key: model_file(path) for key, path in paths.items()}


@pytest.fixture(scope="session")
def u2net_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from inferences.engine.devtools import testing

    home = tmp_path_factory.mktemp("u2net")
    testing.write_tiny_u2net(home / "u2netp.onnx")
    return home


@pytest.fixture(scope="session")
def engine(u2net_home: Path):
    import torch

    from inferences.engine.runner import Engine

    torch.set_num_threads(2)  # same thread count in every run: results are then reproducible (ml-notes §7)
    return Engine(EngineOptions(u2net_home=u2net_home, cache_bytes=1024**3))


@pytest.fixture
def files(models: dict[str, ModelFile]) -> JobFiles:
    return JobFiles(checkpoint=models["checkpoint"])


def png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def red_disc(size: tuple[int, int] = (96, 80)) -> Image.Image:
    image = Image.new("RGB", size, (30, 40, 200))
    ImageDraw.Draw(image).ellipse((size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4), fill=(250, 0, 0))
    return image


def txt2img(**overrides: object) -> dict[str, object]:
    """The keys the WebUI sends (a trimmed 1.4.0 test payload), at tiny size."""
    payload: dict[str, object] = {
        "prompt": "a photo of a cat",
        "negative_prompt": "blurry",
        "styles": [],
        "seed": 1234,
        "subseed": -1,
        "subseed_strength": 0,
        "seed_resize_from_h": -1,
        "seed_resize_from_w": -1,
        "sampler_name": "Euler a",
        "batch_size": 1,
        "n_iter": 1,
        "steps": 3,
        "cfg_scale": 7.0,
        "width": 64,
        "height": 64,
        "restore_faces": None,
        "tiling": None,
        "do_not_save_samples": False,
        "do_not_save_grid": False,
        "eta": None,
        "denoising_strength": None,
        "s_min_uncond": 0,
        "s_churn": 0,
        "s_tmax": float("inf"),
        "s_tmin": 0,
        "s_noise": 1,
        "override_settings": {},
        "override_settings_restore_afterwards": True,
        "refiner_checkpoint": None,
        "refiner_switch_at": None,
        "disable_extra_networks": False,
        "comments": {},
        "enable_hr": False,
        "firstphase_width": 0,
        "firstphase_height": 0,
        "hr_scale": 2.0,
        "hr_upscaler": "Latent",
        "hr_second_pass_steps": 0,
        "hr_resize_x": 0,
        "hr_resize_y": 0,
        "hr_checkpoint_name": None,
        "hr_sampler_name": None,
        "hr_prompt": "",
        "hr_negative_prompt": "",
        "sampler_index": "Euler a",
        "script_name": None,
        "script_args": [],
        "send_images": True,
        "save_images": False,
        "alwayson_scripts": {"refiner": {"args": [False, "", 0.8]}, "seed": {"args": [-1, False, -1, 0, 0, 0]}},
    }
    payload.update(overrides)
    return payload


@pytest.fixture
def site(transactional_db, live_server, esd, admin_user, make_role, make_user, token_for, models, settings):
    settings.ESD_PUBLIC_URL = live_server.url  # the local store's signed upload URLs
    settings.ESD_WORKER_HEARTBEAT_SECONDS = 0.2
    deployment = deploy(esd, admin_user, make_role, make_user, token_for, models["checkpoint"].path)
    yield deployment
    for worker in deployment.workers:
        worker.stop()
