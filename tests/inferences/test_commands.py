"""The engine's commands, and the rule that only inferences/engine/ imports torch."""

import ast
import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from inferences.engine.request.identify import SD1_TINY, identify

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "rembg", "onnxruntime"}


def test_make_tiny_checkpoint_then_txt2img(tmp_path: Path) -> None:
    checkpoint = tmp_path / "demo.safetensors"
    out = io.StringIO()
    call_command("make_tiny_checkpoint", str(checkpoint), "--seed", "4", stdout=out)
    assert "Wrote" in out.getvalue() and identify(checkpoint) == SD1_TINY
    with pytest.raises(CommandError, match="exists; pass --force"):
        call_command("make_tiny_checkpoint", str(checkpoint))
    with pytest.raises(CommandError, match=r"must end in \.safetensors"):
        call_command("make_tiny_checkpoint", str(tmp_path / "demo.ckpt"))

    errors = io.StringIO()
    call_command(
        "txt2img", "--checkpoint", str(checkpoint), "--prompt", "a cat", "--out", str(tmp_path / "out"),
        "--steps", "3", "--width", "64", "--height", "80", "--batch-size", "2", "--seed", "11",
        "--sampler", "DPM++ 2M Karras", stdout=io.StringIO(), stderr=errors,
    )  # fmt: skip
    assert "3/3 steps" in errors.getvalue()
    images = sorted((tmp_path / "out").glob("image_*.png"))
    assert [Image.open(path).size for path in images] == [(64, 80), (64, 80)]
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in Image.open(images[1]).text["parameters"]
    document = json.loads((tmp_path / "out" / "result.json").read_text())
    assert json.loads(document["info"])["all_seeds"] == [11, 12]


def test_txt2img_reports_a_bad_payload_as_a_command_error(tmp_path: Path) -> None:
    checkpoint = tmp_path / "demo.safetensors"
    call_command("make_tiny_checkpoint", str(checkpoint), stdout=io.StringIO())
    with pytest.raises(CommandError, match="width must be a multiple of 8"):
        call_command("txt2img", "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--width", "65")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("txt2img", "--checkpoint", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path))


def test_only_the_engine_imports_the_ml_stack() -> None:
    offenders = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in (".venv", "tests", "bench") or relative.parts[:2] == ("inferences", "engine"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(name.split(".")[0] in HEAVY for name in names):
                offenders.append(str(relative))
    assert offenders == []


def test_txt2img_help_says_what_it_does() -> None:
    from django.core.management import load_command_class

    command = load_command_class("inferences", "txt2img")
    text = command.create_parser("manage.py", "txt2img").format_help()
    assert "Generate images from a checkpoint file with the engine (no server, no queue)." in text


def test_esd_check_device_prints_what_a_worker_will_use_and_times_one_image(db):
    """Issue 29.10: the check a person runs on a new GPU machine before it serves an endpoint."""
    import torch

    out = io.StringIO()
    call_command("esd_check_device", "--size", "64", "--steps", "2", stdout=out)
    said = out.getvalue()
    assert "device:         cpu (CPU (" in said and "dtype:          float32" in said and "torch:          " in said
    assert "one image:      64x64, 2 steps: " in said and " s warm (" in said
    if torch.cuda.is_available():  # a GPU machine: the same check on its device
        gpu = io.StringIO()
        call_command("esd_check_device", "--device", "cuda", "--size", "64", "--steps", "2", stdout=gpu)
        assert "device:         cuda" in gpu.getvalue() and "dtype:          float16" in gpu.getvalue()
    else:
        with pytest.raises(CommandError, match="no CUDA device is available"):
            call_command("esd_check_device", "--device", "cuda", stdout=io.StringIO())
