"""GPU throughput through the engine's own code path, on a full-size SD 1.5-architecture checkpoint.

    python bench/gpu_throughput.py [--device cuda] [--steps 20] [--size 512] [--configs fp16,bf16,fp16+compile,...]

Builds an SD 1.5-architecture model with random weights (the speed of random weights equals that of real ones),
writes it as a single .safetensors file in the layout users upload, then runs txt2img through `Engine.run` exactly
as a worker does: load via the shipped config folder, pipeline cache, A1111 conditioning, PNG encoding.
Reports, per dtype / torch.compile setting: it/s and seconds per image at batch 1, images per second at batch 8
and 16. `bench/gpu.sh` runs it on the device machine. `--smoke` runs every row of the defaults on the CPU in
seconds (the tiny model, 64x64, 2 steps, fp32 and the eager compile backend), so the defaults are checked where no
GPU is (tests/test_bench_smoke.py).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inferences.engine.models.compiling import graph_count
from inferences.engine.request.limits import Limits
from inferences.engine.request.options import EngineOptions, JobFiles, ModelFile
from inferences.engine.runner import Engine, Job


def build_checkpoint(arch: str, device: str, out: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from inferences.engine.configs_path import config_folder
    from inferences.engine.devtools.tiny import write_checkpoint

    folder = config_folder(arch)
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU takes seconds; on a CPU, full size takes ~15 s
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=unet,
        scheduler=PNDMScheduler.from_pretrained(folder, subfolder="scheduler"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return write_checkpoint(pipe.to("cpu"), out, half=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", default="sd15", choices=["sd15", "sd1-tiny"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", default="8,16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", default="fp16,bf16,fp16+default,fp16+max-autotune")
    parser.add_argument("--concurrent", type=int, default=16, help="batch-1 jobs for the dynamic-batching row")
    parser.add_argument("--smoke", action="store_true", help="every default row, on the CPU, in seconds")
    args = parser.parse_args()
    backend = "inductor"
    if args.smoke:
        args.device, args.arch, args.size, args.steps, args.repeats = "cpu", "sd1-tiny", 64, 2, 1
        args.configs = ",".join(
            config.replace("fp16", "fp32").replace("bf16", "fp32") for config in args.configs.split(",")
        )
        backend = "eager"  # compile modes traced, not code-generated: the rows run, their timings mean nothing
    batches = [int(value) for value in args.batches.split(",")]
    # the bench's batches and concurrent jobs, beyond a worker's default ESD_MAX_BATCH_SIZE of 8
    limits = Limits(max_batch_size=max(8, *batches), max_images=max(16, *batches, args.concurrent))

    import torch

    print(f"torch {torch.__version__}, device {args.device}", end="")
    if args.device.startswith("cuda"):
        print(f" ({torch.cuda.get_device_name(0)})", end="")
    print()
    started = time.perf_counter()
    path = build_checkpoint(args.arch, args.device, Path(tempfile.mkdtemp()) / f"{args.arch}-random.safetensors")
    print(f"checkpoint {path.name}: {path.stat().st_size / 1e9:.2f} GB, built in {time.perf_counter() - started:.1f} s")
    files = JobFiles(checkpoint=ModelFile(path, path.name, "f" * 64))

    def job(batch: int) -> dict:
        return {
            "prompt": "a photo of an astronaut riding a horse on mars",
            "negative_prompt": "blurry, low quality",
            "sampler_name": "DPM++ 2M Karras",
            "steps": args.steps,
            "cfg_scale": 7.0,
            "width": args.size,
            "height": args.size,
            "seed": 1,
            "batch_size": batch,
        }

    print(f"txt2img {args.size}x{args.size}, {args.steps} steps, DPM++ 2M Karras, CFG 7 (medians of {args.repeats})")
    for config in args.configs.split(","):
        dtype, _, extra = config.partition("+")
        mode = {"": "off", "compile": "max-autotune"}.get(extra, extra)
        engine = Engine(
            EngineOptions(device=args.device, dtype=dtype, compile=mode, compile_backend=backend, limits=limits)
        )
        graphs = graph_count()
        first = engine.run("txt2img", job(1), files)
        line = f"  {config:<14} load {first.timings['model_seconds']:5.1f} s, first job {first.timings['inference_seconds']:6.1f} s"
        single = [engine.run("txt2img", job(1), files).timings["inference_seconds"] for _ in range(args.repeats)]
        seconds = statistics.median(single)
        line += f" | batch 1: {args.steps / seconds:6.2f} it/s, {seconds:6.3f} s/image"
        for batch in batches:
            engine.run("txt2img", job(batch), files)  # warm-up for this shape (compile traces per batch size)
            runs = [engine.run("txt2img", job(batch), files).timings["inference_seconds"] for _ in range(args.repeats)]
            line += f" | batch {batch}: {batch / statistics.median(runs):6.2f} images/s"
        # dynamic batching: N batch-1 jobs of different prompts and seeds through one loop, beside one at a time
        jobs = [Job("txt2img", {**job(1), "seed": 100 + k, "prompt": f"{job(1)['prompt']}, {k}"}, files)
                for k in range(args.concurrent)]  # fmt: skip
        engine.run_batch(jobs)  # warm-up (its bucket compiles)
        began = time.perf_counter()
        engine.run_batch(jobs)
        together = args.concurrent / (time.perf_counter() - began)
        began = time.perf_counter()
        for one in jobs:
            engine.run(one.task, one.payload, files)
        alone = args.concurrent / (time.perf_counter() - began)
        line += f" | {args.concurrent} concurrent: {together:6.2f} images/s batched, {alone:6.2f} one at a time"
        line += f" | graphs compiled: {graph_count() - graphs}"
        print(line, flush=True)
        del engine
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
