"""The engine's cost over diffusers itself, and the pipeline cache's effect, on the tiny model, in one run.

    .venv/bin/python bench/engine_overhead.py [--runs 30] [--size 128] [--steps 4]

(a) Engine overhead: `Engine.run("txt2img", payload)` (payload parsing, A1111 conditioning, k-diffusion's Euler a
    through the engine's denoiser, PNG with infotext) against a plain reference call with the same sampler
    implementation on the same loaded pipeline: diffusers' own `encode_prompt`, k-diffusion's
    `DiscreteEpsDDPMDenoiser` and `sample_euler_ancestral` called directly, the VAE decode and the PNG encode any
    server must do. Calls alternate, so machine noise hits both alike; medians are compared. Goal: ratio <= 1.05.
(b) Warm vs cold: model acquisition of the first job on a checkpoint (load from the single file) against the
    second (pipeline cache hit), over --runs fresh engines. Goal: warm <= 1% of cold.
(c) The switch to k-diffusion: CPU time per step of Euler a through the engine (k-diffusion) against diffusers'
    own pipeline with its EulerAncestralDiscreteScheduler, same run, alternating; per step = the difference
    between --steps and 3 x --steps runs over the extra steps, so fixed costs cancel. Goal: <= 1.05.
(d) One ControlNet unit (canny, the tiny random ControlNet): the engine's job (payload image decoding, the
    extension's Canny preprocessing, k-diffusion with the residuals) against diffusers'
    StableDiffusionControlNetPipeline over the same loaded modules and ControlNet, fed the same Canny map
    (computed in the timed call, as a script would), Euler a, same steps and size. Goal: ratio <= 1.05.
(e) Hires fix x2 (Latent upscaler, as many second-pass steps as first, denoising 0.5): the engine's job against
    diffusers' two calls, txt2img to latents, torch's bilinear upscale, then img2img on the latents at strength 0.5
    over twice the steps (the same number of second-pass steps as A1111's schedule runs). Goal: ratio <= 1.05.
(f) Batching on CPU: four batched jobs (5 images) through `Engine.run_batch`, and one job of batch_size 4, with the
    engine's CPU rule (one UNet call per image: the pictures equal their lone ones on any CPU, invariance.py)
    against whole-batch UNet calls (the CUDA path), alternating. Reports the price of exactness on this CPU.
(g) A batch-8 job's time outside the denoising loop on the thread that runs the device, before issue 28.1 (its 8
    pictures PNG-encoded one after another inside the job) and after (the worker's finisher encodes them, in
    parallel, while that thread runs the next job): the loop is timed around ksampling.sample, alternating runs.
(h) The live preview (issue 31.1): a 20-step job whose progress wants A1111's "Approx cheap" preview every
    ESD_PREVIEW_EVERY (5) steps against the same job with previews off, alternating; the preview's JPEG kept in
    memory (the worker's write to the job's row is one small UPDATE beside the progress one). Goal: <= 1.02.
Not a test: the figures go in docs/benchmarks.md. `--only f` runs one section.
"""

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inferences.engine.request.options import EngineOptions, JobFiles, ModelFile
from inferences.engine.runner import Engine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="abcdefgh", help="the sections to run, e.g. 'f'")
    args = parser.parse_args()

    import torch
    from diffusers import EulerAncestralDiscreteScheduler

    from inferences.engine.devtools.tiny import write_tiny_checkpoint
    from inferences.engine.sampling import ksampling

    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="esd-bench-"))
    path = write_tiny_checkpoint(folder / "tiny.safetensors")
    files = JobFiles(checkpoint=ModelFile(path, path.name, "0" * 64))
    payload = {
        "prompt": "a photo of an astronaut riding a horse",
        "negative_prompt": "blurry",
        "sampler_name": "Euler a",
        "steps": args.steps,
        "cfg_scale": 7.0,
        "width": args.size,
        "height": args.size,
        "seed": 1234,
    }

    engine = Engine(EngineOptions())
    engine.run("txt2img", payload, files)  # load, warm up
    if "f" in args.only:
        batching(engine, payload, files, args)
    if "g" in args.only:
        outside_the_loop(engine, payload, files, args)
    if "h" in args.only:
        live_preview(engine, payload, files, args)
    if not set("abcde") & set(args.only):
        return
    pipe = engine.pipelines.acquire(("0" * 64, None), lambda: (None, 0)).entry.value.base
    config = dict(pipe.scheduler.config)

    sampling, external = ksampling.k_diffusion()

    def plain(steps: int = args.steps) -> None:
        """The same k-diffusion sampler, called the way a script would call it."""
        with torch.inference_mode():
            cond, uncond = pipe.encode_prompt(
                payload["prompt"], "cpu", 1, True, negative_prompt=payload["negative_prompt"]
            )
            unet = pipe.unet

            class Eps(torch.nn.Module):
                def forward(self, x, t, cond):
                    return unet(x, t, encoder_hidden_states=cond).sample

            denoiser = external.DiscreteEpsDDPMDenoiser(Eps(), ksampling.alphas_cumprod(pipe.scheduler.config), False)

            def guided(x, sigma):
                out = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), cond=torch.cat([cond, uncond]))
                positive, negative = out.chunk(2)
                return negative + (positive - negative) * 7.0

            sigmas = denoiser.get_sigmas(steps)
            generator = torch.Generator("cpu").manual_seed(1234)
            shape = (1, 4, args.size // 8, args.size // 8)
            x = torch.randn(shape, generator=generator) * sigmas[0]
            latents = sampling.sample_euler_ancestral(
                guided, x, sigmas, disable=True,
                noise_sampler=lambda *_: torch.randn(shape, generator=generator),
            )  # fmt: skip
            decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
            image = pipe.image_processor.postprocess(decoded, output_type="pil")[0]
        image.save(io.BytesIO(), format="PNG")

    def diffusers_euler_a(steps: int) -> None:
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(config)  # diffusers' own Euler a
        pipe(
            prompt=payload["prompt"], negative_prompt=payload["negative_prompt"], num_inference_steps=steps,
            guidance_scale=7.0, width=args.size, height=args.size,
            generator=[torch.Generator("cpu").manual_seed(1234)],
        ).images[0].save(io.BytesIO(), format="PNG")  # fmt: skip

    plain()
    engine_times, plain_times = [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        engine.run("txt2img", payload, files).images  # noqa: B018  the PNG too, as the reference makes it
        engine_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        plain()
        plain_times.append(time.perf_counter() - started)
    engine_ms, plain_ms = statistics.median(engine_times) * 1000, statistics.median(plain_times) * 1000
    print(f"(a) txt2img {args.size}x{args.size}, {args.steps} steps, Euler a, CFG 7, {args.runs} alternating runs")
    print(f"    plain k-diffusion call + PNG median {plain_ms:6.1f} ms")
    print(
        f"    Engine.run                  median {engine_ms:7.1f} ms   ratio {engine_ms / plain_ms:.3f} (goal <= 1.05)"
    )

    cold, warm = [], []
    for _ in range(min(args.runs, 10)):
        fresh = Engine(EngineOptions())
        cold.append(fresh.run("txt2img", payload, files).timings["model_seconds"])
        warm.append(fresh.run("txt2img", payload, files).timings["model_seconds"])
    cold_ms, warm_ms = statistics.median(cold) * 1000, statistics.median(warm) * 1000
    print(f"(b) model acquisition over {len(cold)} fresh engines (tiny checkpoint, {path.stat().st_size >> 20} MiB)")
    print(f"    cold (load from file)       median {cold_ms:9.3f} ms")
    print(
        f"    warm (pipeline cache hit)   median {warm_ms:9.3f} ms   {100 * warm_ms / cold_ms:.4f} % of cold (goal <= 1 %)"
    )

    long = args.steps * 3
    times: dict[str, dict[int, list[float]]] = {"k": {args.steps: [], long: []}, "d": {args.steps: [], long: []}}
    for _ in range(args.runs):
        for steps in (args.steps, long):
            started = time.perf_counter()
            engine.run("txt2img", {**payload, "steps": steps}, files)
            times["k"][steps].append(time.perf_counter() - started)
            started = time.perf_counter()
            diffusers_euler_a(steps)
            times["d"][steps].append(time.perf_counter() - started)

    def per_step(kind: str) -> float:
        return (statistics.median(times[kind][long]) - statistics.median(times[kind][args.steps])) / (long - args.steps)

    k_step, d_step = per_step("k") * 1000, per_step("d") * 1000
    print(f"(c) Euler a per step ({args.steps} vs {long} steps, {args.runs} alternating runs each)")
    print(f"    diffusers EulerAncestralDiscreteScheduler  {d_step:7.2f} ms/step")
    print(
        f"    k-diffusion sample_euler_ancestral (engine) {k_step:6.2f} ms/step   ratio {k_step / d_step:.3f} (goal <= 1.05)"
    )
    extensions(engine, pipe, payload, folder, args)


def _alternate(runs: int, first: Any, second: Any) -> tuple[float, float]:
    first(), second()  # warm both (the ControlNet is loaded and cached on the first engine job)
    a, b = [], []
    for _ in range(runs):
        started = time.perf_counter()
        first()
        a.append(time.perf_counter() - started)
        started = time.perf_counter()
        second()
        b.append(time.perf_counter() - started)
    return statistics.median(a) * 1000, statistics.median(b) * 1000


def live_preview(engine: Engine, payload: dict[str, Any], files: JobFiles, args: argparse.Namespace) -> None:
    """Row (h): a job with the live preview every 5 steps against the same job without it, 20 steps."""
    from inferences.engine.request.options import NoProgress

    class Previewed(NoProgress):
        def __init__(self) -> None:
            self.pictures: list[bytes] = []

        def wants_preview(self, done: int) -> bool:
            return done % 5 == 0 and done < 20

        def preview(self, picture: bytes) -> None:
            self.pictures.append(picture)

    job = {**payload, "steps": 20}
    watched = Previewed()
    with_ms, without_ms = _alternate(
        args.runs, lambda: engine.run("txt2img", job, files, watched), lambda: engine.run("txt2img", job, files)
    )
    size = statistics.median(len(picture) for picture in watched.pictures)
    print(f"(h) live preview every 5 steps, {args.size}x{args.size}, 20 steps, Euler a, {args.runs} alternating runs")
    print(f"    previews off median {without_ms:7.1f} ms; on (3 previews, {size:.0f}-byte JPEGs) {with_ms:7.1f} ms")
    print(f"    ratio {with_ms / without_ms:.3f} (goal <= 1.02)")


def batching(engine: Engine, payload: dict[str, Any], files: JobFiles, args: argparse.Namespace) -> None:
    """Row (f): the cost of one UNet call per image on CPU, batching on."""
    from inferences.engine.runner import Job
    from inferences.engine.sampling import ksampling

    prompts = ["a red fox in snow", "a lighthouse at dusk", "a cat on a sofa", "a boat on a lake"]
    jobs = [
        Job("txt2img", {**payload, "prompt": prompt, "seed": 10 + k, "batch_size": 2 if k == 1 else 1}, files)
        for k, prompt in enumerate(prompts)
    ]
    four = {**payload, "batch_size": 4}
    per_image = ksampling.calls_per_image

    def whole_batch(run: Any) -> Any:
        def call() -> None:
            ksampling.calls_per_image = lambda device: False  # type: ignore[assignment]
            try:
                run()
            finally:
                ksampling.calls_per_image = per_image

        return call

    def run_batch() -> None:
        outcomes = engine.run_batch(jobs)
        assert all(outcome.timings.get("batch_jobs") == 4.0 for outcome in outcomes)  # one loop ran them

    def run_four() -> None:
        engine.run("txt2img", four, files)

    print(f"(f) batching on CPU, {args.size}x{args.size}, {args.steps} steps, Euler a, {args.runs} alternating runs")
    for label, run in (("4 jobs batched (5 images)", run_batch), ("1 job, batch_size 4", run_four)):
        exact_ms, whole_ms = _alternate(args.runs, run, whole_batch(run))
        print(f"    {label:26} whole-batch UNet calls median {whole_ms:7.1f} ms")
        print(
            f"    {'':26} one call per image     median {exact_ms:7.1f} ms   ratio {exact_ms / whole_ms:.3f} (the price of exactness)"
        )


def outside_the_loop(engine: Engine, payload: dict[str, Any], files: JobFiles, args: argparse.Namespace) -> None:
    """Row (g): the share of a batch-8 job outside its loop, with the PNG encode in the job and in the finisher."""
    from inferences.engine.request import images
    from inferences.engine.sampling import ksampling

    eight = {**payload, "batch_size": 8}
    sample = ksampling.sample
    loop: list[float] = []

    def timed_sample(*arguments: Any, **keywords: Any) -> Any:
        started = time.perf_counter()
        try:
            return sample(*arguments, **keywords)
        finally:
            loop.append(time.perf_counter() - started)

    ksampling.sample = timed_sample  # type: ignore[assignment]
    before, after, serial, parallel = [], [], [], []
    try:
        assert len(engine.run("txt2img", eight, files).images) == 8  # warm
        for _ in range(args.runs):
            loop.clear()
            started = time.perf_counter()
            result = engine.run("txt2img", eight, files)
            engine_seconds = time.perf_counter() - started
            started = time.perf_counter()
            for image, text in result.pictures:  # the old way: one after another, in the job
                images.png_bytes(image, text)
            serial.append(time.perf_counter() - started)
            started = time.perf_counter()
            images.png_files(result.pictures)
            parallel.append(time.perf_counter() - started)
            in_loop = sum(loop)
            before.append((engine_seconds + serial[-1] - in_loop) / (engine_seconds + serial[-1]))
            after.append((engine_seconds - in_loop) / engine_seconds)
    finally:
        ksampling.sample = sample  # type: ignore[assignment]
    print(f"(g) a batch-8 job, {args.size}x{args.size}, {args.steps} steps, Euler a, {args.runs} runs (medians)")
    print(f"    PNG encode of its 8 pictures: serial {statistics.median(serial) * 1000:7.1f} ms, "
          f"parallel {statistics.median(parallel) * 1000:7.1f} ms ({os.cpu_count()} CPUs)")  # fmt: skip
    print(f"    outside the loop on the device's thread: before {statistics.median(before):6.1%}  "
          f"after {statistics.median(after):6.1%} (VAE decode, conditioning, set-up; encode and store: finisher)")  # fmt: skip


def extensions(engine: Engine, pipe: Any, payload: dict[str, Any], folder: Path, args: argparse.Namespace) -> None:
    """Rows (d) and (e): a ControlNet unit and the hires fix, engine against the plain diffusers calls."""
    import base64

    import cv2
    import numpy as np
    import torch
    from diffusers import (
        EulerAncestralDiscreteScheduler,
        StableDiffusionControlNetPipeline,
        StableDiffusionImg2ImgPipeline,
    )
    from PIL import Image, ImageDraw

    from inferences.engine.devtools import testing

    controlnet_path = testing.write_tiny_controlnet(folder / "canny.safetensors")
    checkpoint = ModelFile(folder / "tiny.safetensors", "tiny.safetensors", "0" * 64)
    files = JobFiles(checkpoint=checkpoint, controlnets=(ModelFile(controlnet_path, controlnet_path.name, "1" * 64),))
    guide = Image.new("RGB", (args.size, args.size), "white")
    ImageDraw.Draw(guide).ellipse(
        (args.size // 5, args.size // 5, 4 * args.size // 5, 4 * args.size // 5), outline="black", width=3
    )
    buffer = io.BytesIO()
    guide.save(buffer, format="PNG")
    guide_b64 = base64.b64encode(buffer.getvalue()).decode()
    unit = {"module": "canny", "model": "canny", "image": guide_b64, "processor_res": args.size, "resize_mode": 0}
    controlled = {**payload, "alwayson_scripts": {"controlnet": {"args": [unit]}}}
    engine.run("txt2img", controlled, files)
    controlnet = engine.controlnet(
        files.controlnets[0], engine.pipelines.acquire(("0" * 64, None), lambda: (None, 0)).entry.value
    )
    control_pipe = StableDiffusionControlNetPipeline.from_pipe(pipe, controlnet=controlnet)
    control_pipe.set_progress_bar_config(disable=True)
    config = dict(pipe.scheduler.config)

    def plain_controlnet() -> None:
        control_pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(config)
        edges = cv2.Canny(np.asarray(Image.open(io.BytesIO(base64.b64decode(guide_b64))).convert("RGB")), 100, 200)
        hint = Image.fromarray(np.stack([edges] * 3, axis=2))
        control_pipe(
            prompt=payload["prompt"], negative_prompt=payload["negative_prompt"], image=hint,
            num_inference_steps=args.steps, guidance_scale=7.0, width=args.size, height=args.size,
            generator=torch.Generator("cpu").manual_seed(1234),
        ).images[0].save(io.BytesIO(), format="PNG")  # fmt: skip

    engine_ms, plain_ms = _alternate(
        args.runs, lambda: engine.run("txt2img", controlled, files).images, plain_controlnet
    )
    print(f"(d) one ControlNet unit (canny) {args.size}x{args.size}, {args.steps} steps, {args.runs} alternating runs")
    print(f"    diffusers StableDiffusionControlNetPipeline median {plain_ms:7.1f} ms")
    print(
        f"    Engine.run                                 median {engine_ms:7.1f} ms   ratio {engine_ms / plain_ms:.3f} (goal <= 1.05)"
    )

    hires = {**payload, "enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent", "denoising_strength": 0.5}
    img2img = StableDiffusionImg2ImgPipeline.from_pipe(pipe)
    img2img.set_progress_bar_config(disable=True)

    def plain_hires() -> None:
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(config)
        img2img.scheduler = EulerAncestralDiscreteScheduler.from_config(config)
        arguments = {"prompt": payload["prompt"], "negative_prompt": payload["negative_prompt"], "guidance_scale": 7.0}
        latents = pipe(
            **arguments, num_inference_steps=args.steps, width=args.size, height=args.size, output_type="latent",
            generator=torch.Generator("cpu").manual_seed(1234),
        ).images  # fmt: skip
        upscaled = torch.nn.functional.interpolate(latents, scale_factor=2, mode="bilinear")
        img2img(
            **arguments, image=upscaled, strength=0.5, num_inference_steps=2 * args.steps,
            generator=torch.Generator("cpu").manual_seed(1234),
        ).images[0].save(io.BytesIO(), format="PNG")  # fmt: skip

    engine_ms, plain_ms = _alternate(args.runs, lambda: engine.run("txt2img", hires, files).images, plain_hires)
    print(
        f"(e) hires fix x2 (Latent) {args.size}x{args.size} -> {2 * args.size}x{2 * args.size}, {args.steps} + {args.steps} steps, {args.runs} alternating runs"
    )
    print(f"    diffusers txt2img latents + img2img  median {plain_ms:7.1f} ms")
    print(
        f"    Engine.run                           median {engine_ms:7.1f} ms   ratio {engine_ms / plain_ms:.3f} (goal <= 1.05)"
    )


if __name__ == "__main__":
    main()
