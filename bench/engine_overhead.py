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
Not a test: the figures go in docs/benchmarks.md.
"""

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inferences.engine.options import EngineOptions, JobFiles, ModelFile
from inferences.engine.runner import Engine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from diffusers import EulerAncestralDiscreteScheduler

    from inferences.engine import ksampling
    from inferences.engine.tiny import write_tiny_checkpoint

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
        engine.run("txt2img", payload, files)
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


if __name__ == "__main__":
    main()
