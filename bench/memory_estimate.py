"""The memory estimate (inferences/engine/request/memory.py) against measured peak RSS on CPU, one fresh process a row.

    .venv/bin/python bench/memory_estimate.py [--full] [--upscalers]

Each row runs one txt2img job (Euler a, 2 steps) in its own process and reports the process's peak RSS
(ru_maxrss, which includes loading the model) next to the estimate. `--full` adds a full-width SD 1.5 (random
weights, written to a temporary file first: about 4 GB of disk, a minute or two). `--upscalers` measures
extra-single-image with real-width upscaler models instead (ESRGAN's RRDB at 64 filters, as 4x-UltraSharp, with 6
blocks rather than 23: the blocks' activations are transient, so the peak is the same and the run shorter; and
Real-ESRGAN's compact net at 64 features, as realesr-general-x4v3). Not a timed test: it prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys
from pathlib import Path
import torch
torch.set_num_threads(2)
from inferences.engine.request.identify import header_entries
from inferences.engine.request.memory import ModelShape, estimate
from inferences.engine.request.options import EngineOptions, JobFiles, ModelFile
from inferences.engine.runner import Engine

path, width, height, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
files = JobFiles(checkpoint=ModelFile(path, path.name, sha256="bench"))
shape = ModelShape.of(path.name, header_entries(path))
need = estimate(shape, width, height, batch, 4)
engine = Engine(EngineOptions(threads=2, memory_bytes=1 << 50))
payload = {"prompt": "a cat", "steps": 2, "sampler_name": "Euler a", "seed": 1}
engine.run("txt2img", {**payload, "width": 64, "height": 64}, files)  # the model loaded
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
engine.run("txt2img", {**payload, "width": width, "height": height, "batch_size": batch}, files)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"loaded": loaded, "peak": peak, "estimate": need.total, "tiled": need.tiled}))
"""

UPSCALER_CHILD = r"""
import base64, io, json, resource, sys
from pathlib import Path
import torch
from PIL import Image
torch.set_num_threads(2)
from inferences.engine.request.options import EngineOptions, JobFiles, ModelFile
from inferences.engine.runner import Engine

path, side, factor = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
files = JobFiles(upscalers=(ModelFile(path, path.name, sha256="bench"),))
buffer = io.BytesIO()
Image.effect_noise((side, side), 64).convert("RGB").save(buffer, "PNG")
payload = {"image": base64.b64encode(buffer.getvalue()).decode(), "upscaler_1": path.stem, "upscaling_resize": factor}
engine = Engine(EngineOptions(threads=2, memory_bytes=1 << 50))
need = engine.plan("extra-single-image", payload, files).memory.estimate(4)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
engine.run("extra-single-image", payload, files)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "peak": peak, "estimate": need.total, "upscale": need.upscale}))
"""

ROWS = [
    ("sd1", 256, 256, 1),
    ("sd1", 512, 512, 1),
    ("sd1", 1024, 1024, 1),
    ("sd1", 1024, 1024, 4),
    ("sd1", 768, 768, 2),
    ("sdxl", 1024, 1024, 1),
    ("sdxl", 1024, 1024, 2),
]


def measure(path: Path, width: int, height: int, batch: int, child: str = CHILD) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", child, str(path), str(width), str(height), str(batch)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"},
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def full_sd15(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from inferences.engine.configs_path import config_folder
    from inferences.engine.devtools.tiny import _config, write_checkpoint

    source = config_folder("sd15")
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**_config(source, "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig(**_config(source, "text_encoder"))),
        tokenizer=CLIPTokenizer.from_pretrained(source / "tokenizer"),
        unet=UNet2DConditionModel(**_config(source, "unet")),
        scheduler=PNDMScheduler.from_pretrained(source, subfolder="scheduler"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return write_checkpoint(pipe, folder / "sd15-random.safetensors", half=True)


def real_width_upscalers(folder: Path) -> list[Path]:
    import importlib

    import torch

    from inferences.engine.devtools.testing import _save
    from inferences.engine.features.upscalers import registry

    registry()
    torch.manual_seed(0)
    rrdb = importlib.import_module("spandrel.architectures.ESRGAN.__arch.RRDB").RRDBNet
    compact = importlib.import_module("spandrel.architectures.Compact.__arch.SRVGG").SRVGGNetCompact
    return [
        _save(rrdb(num_filters=64, num_blocks=6, scale=4).state_dict(), folder / "4x-RRDB64.safetensors"),
        _save(compact(num_feat=64, num_conv=32, upscale=4).state_dict(), folder / "4x-Compact64.safetensors"),
    ]


def upscaler_rows(folder: Path) -> None:
    print("| model | input | output | RSS before | peak RSS | estimate | estimate / peak |")
    print("|---|---|---|---|---|---|---|")
    mib = 1024**2
    for path in real_width_upscalers(folder):
        for side, factor in ((128, 4), (256, 4), (512, 2), (512, 4)):
            r = measure(path, side, factor, 0, UPSCALER_CHILD)  # type: ignore[arg-type]
            out = int(side * factor)
            print(
                f"| {path.stem} | {side}x{side} | {out}x{out} | {r['before'] / mib:.0f} MiB | {r['peak'] / mib:.0f} MiB "
                f"| {r['estimate'] / mib:.0f} MiB | {r['estimate'] / r['peak']:.2f} |",
                flush=True,
            )


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from inferences.engine.devtools.tiny import write_tiny_checkpoint

    if "--upscalers" in sys.argv:
        upscaler_rows(Path(tempfile.mkdtemp(prefix="esd-memory-")))
        return

    folder = Path(tempfile.mkdtemp(prefix="esd-memory-"))
    models = {arch: write_tiny_checkpoint(folder / f"tiny-{arch}.safetensors", arch=arch) for arch in ("sd1", "sdxl")}
    rows = [(f"tiny {arch}", models[arch], w, h, b) for arch, w, h, b in ROWS]
    if "--full" in sys.argv:
        sd15 = full_sd15(folder)
        rows += [("SD 1.5 (full width)", sd15, 256, 256, 1), ("SD 1.5 (full width)", sd15, 512, 512, 1)]
    print("| model | size | batch | RSS after load | peak RSS | estimate | estimate / peak |")
    print("|---|---|---|---|---|---|---|")
    for label, path, width, height, batch in rows:
        r = measure(path, width, height, batch)
        mib = 1024**2
        tiled = " (tiled decode)" if r["tiled"] else ""
        print(
            f"| {label} | {width}x{height}{tiled} | {batch} | {r['loaded'] / mib:.0f} MiB | {r['peak'] / mib:.0f} MiB "
            f"| {r['estimate'] / mib:.0f} MiB | {r['estimate'] / r['peak']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
