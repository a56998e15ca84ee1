"""The memory estimate (inferences/engine/memory.py) against measured peak RSS on CPU, one fresh process a row.

    .venv/bin/python bench/memory_estimate.py [--full]

Each row runs one txt2img job (Euler a, 2 steps) in its own process and reports the process's peak RSS
(ru_maxrss, which includes loading the model) next to the estimate. `--full` adds a full-width SD 1.5 (random
weights, written to a temporary file first: about 4 GB of disk, a minute or two). Not a timed test: it prints.
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
from inferences.engine.identify import header_entries
from inferences.engine.memory import ModelShape, estimate
from inferences.engine.options import EngineOptions, JobFiles, ModelFile
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

ROWS = [
    ("sd1", 256, 256, 1),
    ("sd1", 512, 512, 1),
    ("sd1", 1024, 1024, 1),
    ("sd1", 1024, 1024, 4),
    ("sd1", 768, 768, 2),
    ("sdxl", 1024, 1024, 1),
    ("sdxl", 1024, 1024, 2),
]


def measure(path: Path, width: int, height: int, batch: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(width), str(height), str(batch)],
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
    from inferences.engine.tiny import _config, write_checkpoint

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


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from inferences.engine.tiny import write_tiny_checkpoint

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
