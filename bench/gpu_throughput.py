"""The GPU report of issue 28: the engine beside plain diffusers in one run, on full-size random-weight models.

    python bench/gpu_throughput.py [--device cuda] [--steps 20] [--size 512] [--configs fp16,fp16+default,...]

`bench/gpu.sh` runs it on the device machine; `--smoke` runs every section on the CPU in about a minute (the tiny
models, 64x64, 2 steps, fp32, dynamo's eager backend: the sections run, their figures mean nothing), which
tests/test_bench_smoke.py checks. Random weights run at the speed of real ones. Every job goes through the
engine's own code (`Engine.run` / `run_batch`: the shipped config folders, the pipeline cache, A1111's
conditioning and DPM++ 2M Karras, CFG 7), and the pictures' PNG encoding is timed apart, as a worker's finisher
does it off the device's path. Sections, each printed as soon as it is measured (a run cut short keeps what it
printed; `--budget` seconds skip what would not fit):

  A  plain diffusers, the reference: the same checkpoint through StableDiffusionPipeline, batch 1 and 8
  B  the bare UNet's ceiling: calls per second at the CFG batch of batch 1 (2 rows) and of batch 8 (16 rows)
  C  the engine per dtype / compile mode: load, first job, batch 1 and 8, 16 and 64 concurrent batch-1 jobs
     through the worker's batching policy (ESD_MAX_BATCH_IMAGES 16, a 25 ms window), graphs compiled;
     fp8 rows also report their pixel difference against fp16
  D  where a job's time goes (eager): text conditioning, sampling loop, VAE decode, the rest; PNG encode apart;
     and how often the host waited for the device inside the loop (torch's CUDA sync debug mode)
  E  a warm restart: a new process with the compile cache the first compiled row filled, its first job
  F  the batch window: a Poisson stream of batch-1 jobs at twice the batch-1 rate, for several windows
  G  SDXL at 1024x1024: the engine beside StableDiffusionXLPipeline, batch 1
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stats import percentile  # noqa: E402
from inferences.engine.models.compiling import graph_count  # noqa: E402
from inferences.engine.models.device import release_memory  # noqa: E402
from inferences.engine.request.limits import Limits  # noqa: E402
from inferences.engine.request.options import EngineOptions, JobFiles, ModelFile  # noqa: E402
from inferences.engine.runner import Engine, Job, Result  # noqa: E402

PROMPT = "a photo of an astronaut riding a horse on mars"
NEGATIVE = "blurry, low quality"
MAX_BATCH_IMAGES = 16  # a worker's default ESD_MAX_BATCH_IMAGES
WINDOW = 0.025  # a CUDA worker's default batch window (inferences/batching.py)


class Report:
    """Prints as it goes; knows how much of the run's budget is left."""

    def __init__(self, budget: float) -> None:
        self.started, self.budget = time.perf_counter(), budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.started)

    def section(self, title: str) -> None:
        print(f"\n{title}", flush=True)

    def line(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def guarded(self, name: str, needs: float, run: Callable[[], None]) -> None:
        """Run one row, unless less than `needs` seconds are left; a failure is reported and the report goes on."""
        if self.left() < needs:
            self.line(f"{name}: skipped ({self.left():.0f} s of the budget left, about {needs:.0f} s needed)")
            return
        try:
            run()
        except Exception as exc:  # one row's failure (a mode this stack cannot compile, memory) is a finding too
            self.line(f"{name}: failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        finally:
            release_memory()


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def build_checkpoint(arch: str, device: str, out: Path) -> Path:
    """A random-weight checkpoint of `arch`'s shipped config, written as users upload it (one fp16 file)."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from inferences.engine.configs_path import config_folder
    from inferences.engine.devtools.tiny import write_checkpoint

    folder = config_folder(arch)
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU takes seconds; on a CPU, SD 1.5 takes ~15 s
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        if arch.startswith("sdxl"):
            text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    parts: dict[str, Any] = {"vae": vae, "text_encoder": text_encoder, "unet": unet, "scheduler": None}
    parts["tokenizer"] = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    if arch.startswith("sdxl"):
        parts.update(text_encoder_2=text_encoder_2, tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"))
        pipe: Any = StableDiffusionXLPipeline(**parts)
    else:
        pipe = StableDiffusionPipeline(
            **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    pipe.to(torch.float16)  # halves the copy to the CPU; the file is fp16 either way
    return write_checkpoint(pipe.to("cpu"), out, half=True)


def payload(size: int, steps: int, batch: int = 1, seed: int = 1, index: int | None = None) -> dict[str, Any]:
    return {
        "prompt": PROMPT if index is None else f"{PROMPT}, variant {index}",
        "negative_prompt": NEGATIVE,
        "sampler_name": "DPM++ 2M Karras",
        "steps": steps,
        "cfg_scale": 7.0,
        "width": size,
        "height": size,
        "seed": seed,
        "batch_size": batch,
    }


def median_seconds(run: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        sync()
        began = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


# --- A, G: plain diffusers -----------------------------------------------------------------------------------------


def plain_pipeline(arch: str, path: Path, device: str) -> Any:
    """The checkpoint through diffusers as its documentation shows: single-file load, DPM++ 2M Karras."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import logging as diffusers_logging

    from inferences.engine.configs_path import config_folder

    diffusers_logging.disable_progress_bar()

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    kwargs: dict[str, Any] = {"config": str(config_folder(arch)), "local_files_only": True, "torch_dtype": dtype}
    if arch.startswith("sdxl"):
        pipe = StableDiffusionXLPipeline.from_single_file(str(path), **kwargs)
    else:
        pipe = StableDiffusionPipeline.from_single_file(
            str(path), safety_checker=None, requires_safety_checker=False, **kwargs
        )
    pipe.to(device)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def plain_seconds(pipe: Any, size: int, steps: int, batch: int, repeats: int) -> float:
    def run() -> None:
        pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=7.0, width=size, height=size,
             num_images_per_prompt=batch, output_type="pil")  # fmt: skip

    run()  # warm-up
    return median_seconds(run, repeats)


def unet_calls_per_second(unet: Any, rows: int, size: int, repeats: int) -> float:
    """The bare UNet at `rows` rows: what no engine can beat per step."""
    import torch

    parameter = next(unet.parameters())
    latent = size // 8
    sample = torch.randn(rows, 4, latent, latent, device=parameter.device, dtype=parameter.dtype)
    hidden = torch.randn(rows, 77, unet.config.cross_attention_dim, device=parameter.device, dtype=parameter.dtype)
    timestep = torch.full((rows,), 500.0, device=parameter.device)
    calls = 10

    def run() -> None:
        for _ in range(calls):
            unet(sample, timestep, encoder_hidden_states=hidden)

    with torch.inference_mode():
        run()
        return calls / median_seconds(run, repeats)


# --- C, F: the engine, and the worker's batching policy --------------------------------------------------------------


def succeeded(outcome: Result | Exception) -> Result:
    """One job's outcome of `run_batch`: its result, or its exception raised."""
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def serve(engine: Engine, arrivals: list[tuple[float, Job]], window: float) -> tuple[float, float, float]:
    """The jobs through one worker's loop as inferences/batching.py's take_companions batches them: take the oldest
    arrived job, wait up to `window` for more (at most MAX_BATCH_IMAGES images), run them together; PNGs encoded
    by a thread pool while the next batch runs. Returns jobs/s, the median and the 95th percentile of a job's
    latency (arrival to settled)."""
    began = time.perf_counter()
    pending = sorted(arrivals, key=lambda pair: pair[0])
    done: list[tuple[float, Any]] = []

    def settle(outcome: Result | Exception) -> float:
        """A job is settled when its PNGs are encoded, as a worker's finisher does it (the upload is not measured)."""
        succeeded(outcome).images  # noqa: B018 (encodes them)
        return time.perf_counter() - began

    with ThreadPoolExecutor(4) as finisher:
        while pending:
            now = time.perf_counter() - began
            if pending[0][0] > now:
                time.sleep(pending[0][0] - now)
            batch = [pending.pop(0)]
            deadline = time.perf_counter() - began + window
            while window > 0 and len(batch) < MAX_BATCH_IMAGES:  # a window of 0: batching off
                now = time.perf_counter() - began
                while pending and pending[0][0] <= now and len(batch) < MAX_BATCH_IMAGES:
                    batch.append(pending.pop(0))
                if len(batch) >= MAX_BATCH_IMAGES or now >= deadline:
                    break
                time.sleep(min(0.005, deadline - now))
            outcomes = engine.run_batch([job for _, job in batch])
            for (arrived, _), outcome in zip(batch, outcomes, strict=True):
                done.append((arrived, finisher.submit(settle, outcome)))
        latencies = [future.result() - arrived for arrived, future in done]
    wall = max(arrived + latency for (arrived, _), latency in zip(done, latencies, strict=True))
    return len(done) / wall, statistics.median(latencies), percentile(latencies, 0.95)


def concurrent_jobs(files: JobFiles, size: int, steps: int, count: int) -> list[Job]:
    """`count` batch-1 jobs, each its own prompt and seed."""
    return [Job("txt2img", payload(size, steps, seed=100 + k, index=k), files) for k in range(count)]


# --- D: where the time goes ----------------------------------------------------------------------------------------


@contextmanager
def stage_timer() -> Iterator[dict[str, float]]:
    """Seconds in the engine's text conditioning, sampling loop and VAE decode, each ended by a device sync."""
    from inferences.engine import generate
    from inferences.engine.sampling import ksampling

    totals = {"text": 0.0, "loop": 0.0, "decode": 0.0}
    originals = {
        "text": (generate.ModelRun, "conditioning"),
        "loop": (ksampling, "sample"),
        "decode": (generate.ModelRun, "decode"),
    }
    saved = {stage: getattr(owner, name) for stage, (owner, name) in originals.items()}

    def timed(stage: str) -> Callable[..., Any]:
        function = saved[stage]

        def run(*args: Any, **kwargs: Any) -> Any:
            sync()
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                sync()
                totals[stage] += time.perf_counter() - began

        return run

    for stage, (owner, name) in originals.items():
        setattr(owner, name, timed(stage))
    try:
        yield totals
    finally:
        for stage, (owner, name) in originals.items():
            setattr(owner, name, saved[stage])


def host_waits_in_loop(run: Callable[[], Any]) -> int | None:
    """How many times the host waited for the device inside the sampling loops of `run`: torch's CUDA sync debug
    mode warns at each call that blocks the host until the device is done (a value read back, a blocking copy).
    None off CUDA, where nothing waits."""
    import torch

    from inferences.engine.sampling import ksampling

    if not torch.cuda.is_available():
        return None
    sample, waits = ksampling.sample, 0

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal waits
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                return sample(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("default")
                waits += sum("synchroniz" in str(warning.message) for warning in seen)

    ksampling.sample = counted
    try:
        run()
    finally:
        ksampling.sample = sample
    return waits


def breakdown(report: Report, label: str, run: Callable[[], list[Result]]) -> None:
    from inferences.engine.request import images

    run()  # warm-up
    with stage_timer() as totals:
        sync()
        began = time.perf_counter()
        results = run()
        sync()
        wall = time.perf_counter() - began
    pictures = [picture for result in results for picture in result.pictures]
    encode_began = time.perf_counter()
    images.png_files(pictures)  # in parallel, as the finisher does
    encode = time.perf_counter() - encode_began
    serial = median_seconds(lambda: images.png_bytes(*pictures[0]), 3)
    rest = wall - sum(totals.values())
    shares = ", ".join(f"{stage} {seconds / wall:4.0%}" for stage, seconds in (*totals.items(), ("rest", rest)))
    report.line(
        f"{label:<16} wall {wall:6.3f} s: {shares} | outside the loop {(wall - totals['loop']) / wall:4.0%} | "
        f"PNG encode apart: {encode * 1000:5.0f} ms for {len(pictures)} ({serial * 1000:4.0f} ms each serially)"
    )


# --- the report ----------------------------------------------------------------------------------------------------


def engine_options(args: argparse.Namespace, config: str, cache: Path | None) -> EngineOptions:
    dtype, _, mode = config.partition("+")
    return EngineOptions(
        device=args.device,
        dtype=dtype,
        compile=mode or "off",
        compile_backend=args.backend,
        compile_cache=cache,
        limits=Limits(max_batch_size=max(8, args.batch), max_images=max(MAX_BATCH_IMAGES, args.batch)),
        cache_bytes=64 * 1024**3,
    )


def first_job(args: argparse.Namespace) -> None:
    """--first-job: load and run one batch-1 job in this (new) process; prints its timings as JSON (section E)."""
    began = time.perf_counter()
    path = Path(args.checkpoint)
    engine = Engine(engine_options(args, args.configs, Path(args.cache)))
    result = engine.run("txt2img", payload(args.size, args.steps), JobFiles(checkpoint=ModelFile(path, path.name)))
    print(json.dumps({
        "load": result.timings["model_seconds"], "job": result.timings["inference_seconds"],
        "process": time.perf_counter() - began, "graphs": graph_count(),
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", default="sd15", choices=["sd15", "sd1-tiny"])
    parser.add_argument("--sdxl-arch", default="sdxl", choices=["sdxl", "sdxl-tiny", "none"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--sdxl-size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", default="fp16,fp16+default,fp16+reduce-overhead,fp8+reduce-overhead")
    parser.add_argument("--concurrent", default="16,64", help="batch-1 jobs arriving at once (section C)")
    parser.add_argument("--stream-jobs", type=int, default=32, help="jobs of the Poisson stream (section F)")
    parser.add_argument("--windows", default="0,25,50", help="batch windows in ms (section F)")
    parser.add_argument("--budget", type=float, default=480, help="seconds; rows that would not fit are skipped")
    parser.add_argument("--backend", default="inductor", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="every section, on the CPU, in about a minute")
    parser.add_argument("--first-job", action="store_true", help=argparse.SUPPRESS)  # section E's new process
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.device, args.arch, args.sdxl_arch, args.size, args.sdxl_size = "cpu", "sd1-tiny", "sdxl-tiny", 64, 64
        args.steps, args.repeats, args.backend, args.concurrent, args.stream_jobs = 2, 1, "eager", "4,8", 6
        args.configs = args.configs.replace("fp16", "fp32")  # fp8 stays: refused on a CPU, which the row reports
    if args.first_job:
        first_job(args)
        return

    import torch

    report = Report(args.budget)
    name = (
        torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}), {args.device}: {name}")
    print(f"txt2img {args.size}x{args.size}, {args.steps} steps, DPM++ 2M Karras, CFG 7; medians of {args.repeats}")
    folder = Path(tempfile.mkdtemp(prefix="esd-gpu-bench-"))
    began = time.perf_counter()
    path = build_checkpoint(args.arch, args.device, folder / f"{args.arch}-random.safetensors")
    print(f"checkpoint {path.name}: {path.stat().st_size / 1e9:.2f} GB, built in {time.perf_counter() - began:.1f} s")
    files = JobFiles(checkpoint=ModelFile(path, path.name))
    counts = [int(count) for count in args.concurrent.split(",")]
    configs = args.configs.split(",")
    reference = configs[0]  # the row that D, F and G run, and the one fp8's pixels are compared with
    measured: dict[str, float] = {}

    report.section("A. plain diffusers (StableDiffusionPipeline, same checkpoint, DPM++ 2M Karras), the reference")

    def plain() -> None:
        pipe = plain_pipeline(args.arch, path, args.device)
        one = plain_seconds(pipe, args.size, args.steps, 1, args.repeats)
        batch = plain_seconds(pipe, args.size, args.steps, args.batch, args.repeats)
        measured.update(plain_one=one, plain_batch=batch)
        report.line(
            f"batch 1: {args.steps / one:6.2f} it/s ({one:.3f} s/image) | batch {args.batch}: "
            f"{args.batch / batch:6.2f} images/s"
        )

        report.section("B. the bare UNet (plain's, eager): its ceiling")
        for rows, label in ((2, "batch 1"), (2 * args.batch, f"batch {args.batch}")):
            calls = unet_calls_per_second(pipe.unet, rows, args.size, args.repeats)
            ceiling = calls / args.steps * rows / 2
            report.line(f"{rows:2} rows ({label} with CFG): {calls:6.2f} calls/s = at most {ceiling:6.2f} images/s")

    report.guarded("plain diffusers", 30, plain)

    report.section(
        f"C. the engine: batch 1, batch {args.batch}, and {', '.join(map(str, counts))} batch-1 jobs arriving at once "
        f"through the worker's batching ({WINDOW * 1000:.0f} ms window, {MAX_BATCH_IMAGES} images a loop)"
    )
    cache = folder / "torch-compile"  # one folder, as a worker's $ESD_DATA_DIR/torch-compile (inductor reads it once)
    reference_png: list[bytes] = []
    rows_run: list[str] = []

    def engine_row(config: str) -> None:
        engine = Engine(engine_options(args, config, cache))
        graphs = graph_count()
        first = engine.run("txt2img", payload(args.size, args.steps), files)
        one = median_seconds(lambda: engine.run("txt2img", payload(args.size, args.steps), files), args.repeats)
        line = f"{config:<22} load {first.timings['model_seconds']:5.1f} s, first job {first.timings['inference_seconds']:6.1f} s"
        line += f" | batch 1: {args.steps / one:6.2f} it/s"
        if "plain_one" in measured:
            line += f" (x{measured['plain_one'] / one:.2f} plain)"
        engine.run("txt2img", payload(args.size, args.steps, args.batch), files)  # its bucket compiles
        batch = median_seconds(
            lambda: engine.run("txt2img", payload(args.size, args.steps, args.batch), files), args.repeats
        )
        line += f" | batch {args.batch}: {args.batch / batch:6.2f} images/s"
        if "plain_batch" in measured:
            line += f" (x{measured['plain_batch'] / batch:.2f} plain)"
        for count in counts:
            jobs = concurrent_jobs(files, args.size, args.steps, count)
            serve(engine, [(0.0, job) for job in jobs[:MAX_BATCH_IMAGES]], WINDOW)  # the loop's bucket compiles
            rate, _, p95 = serve(engine, [(0.0, job) for job in jobs], WINDOW)
            line += f" | {count} at once: {rate:6.2f} images/s, p95 {p95:5.2f} s"
        line += f" | graphs compiled: {graph_count() - graphs}"
        picture = engine.run("txt2img", payload(args.size, args.steps), files).images[0]
        if config == reference:
            reference_png.append(picture)
            measured["one"] = one
        elif reference_png and config.partition("+")[0] != reference.partition("+")[0]:  # another dtype
            difference = abs(pixels(picture) - pixels(reference_png[0]))
            line += f" | pixels against {reference}: mean {difference.mean():.2f}, max {difference.max()}"
        report.line(line)
        rows_run.append(config)
        torch._dynamo.reset()  # this row's graphs go with its engine

    for config in configs:
        report.guarded(config, 60, lambda config=config: engine_row(config))
    if len(counts) and "one" in measured:

        def alone() -> None:
            engine = Engine(engine_options(args, reference, None))
            jobs = concurrent_jobs(files, args.size, args.steps, counts[0])
            rate, _, p95 = serve(engine, [(0.0, job) for job in jobs], 0.0)
            report.line(f"{counts[0]} at once, batching off ({reference}): {rate:6.2f} images/s, p95 {p95:5.2f} s")

        report.guarded("batching off", 30, alone)

    report.section(f"D. where the time goes ({reference}): shares of the job's wall")

    def stages() -> None:
        engine = Engine(engine_options(args, reference, None))
        breakdown(report, "batch 1", lambda: [engine.run("txt2img", payload(args.size, args.steps), files)])
        breakdown(
            report,
            f"batch {args.batch}",
            lambda: [engine.run("txt2img", payload(args.size, args.steps, args.batch), files)],
        )
        jobs = concurrent_jobs(files, args.size, args.steps, MAX_BATCH_IMAGES)
        breakdown(report, f"{MAX_BATCH_IMAGES} jobs batched", lambda: [succeeded(r) for r in engine.run_batch(jobs)])
        waits = host_waits_in_loop(lambda: engine.run("txt2img", payload(args.size, args.steps), files))
        counted = "not counted off CUDA" if waits is None else f"{waits} in {args.steps} steps"
        report.line(f"host waits in the loop (batch 1): {counted}")

    report.guarded("stages", 30, stages)

    compiled = [config for config in rows_run if "+" in config][:1]  # the first compiled row: the others' alike
    report.section("E. a warm restart: a new worker process with the compile cache the first compiled row filled")
    for config in compiled:

        def restart(config: str = config) -> None:
            command = [sys.executable, __file__, "--first-job", "--checkpoint", str(path), "--cache", str(cache),
                       "--configs", config, "--device", args.device, "--size", str(args.size), "--steps", str(args.steps),
                       "--backend", args.backend]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, timeout=max(60, report.left()), check=True)
            timings = json.loads(done.stdout.strip().splitlines()[-1])
            report.line(
                f"{config:<22} process {timings['process']:5.1f} s: load {timings['load']:5.1f} s, first job "
                f"{timings['job']:5.1f} s, graphs compiled {timings['graphs']}"
            )

        report.guarded(config, 40, restart)

    report.section(
        f"F. the batch window: {args.stream_jobs} batch-1 jobs arriving as a Poisson stream at twice the batch-1 rate"
    )

    def windows() -> None:
        engine = Engine(engine_options(args, reference, None))
        rate = 2.0 / measured["one"]
        clock, arrivals, draw = 0.0, [], random.Random(0)
        for job in concurrent_jobs(files, args.size, args.steps, args.stream_jobs):
            clock += draw.expovariate(rate)
            arrivals.append((clock, job))
        for window in (int(value) for value in args.windows.split(",")):
            jobs_per_second, p50, p95 = serve(engine, arrivals, window / 1000)
            report.line(
                f"window {window:3} ms: {jobs_per_second:6.2f} jobs/s, latency p50 {p50:5.2f} s, p95 {p95:5.2f} s"
            )

    report.guarded("batch window", 40, windows)

    if args.sdxl_arch != "none":
        report.section(f"G. SDXL {args.sdxl_size}x{args.sdxl_size}, batch 1, {reference}")

        def sdxl() -> None:
            began = time.perf_counter()
            xl = build_checkpoint(args.sdxl_arch, args.device, folder / f"{args.sdxl_arch}-random.safetensors")
            report.line(
                f"checkpoint {xl.name}: {xl.stat().st_size / 1e9:.2f} GB, built in {time.perf_counter() - began:.1f} s"
            )
            xl_files = JobFiles(checkpoint=ModelFile(xl, xl.name))
            engine = Engine(engine_options(args, reference, None))
            engine.run("txt2img", payload(args.sdxl_size, args.steps), xl_files)
            ours = median_seconds(
                lambda: engine.run("txt2img", payload(args.sdxl_size, args.steps), xl_files), args.repeats
            )
            del engine
            release_memory()
            theirs = plain_seconds(
                plain_pipeline(args.sdxl_arch, xl, args.device), args.sdxl_size, args.steps, 1, args.repeats
            )
            report.line(
                f"engine {args.steps / ours:6.2f} it/s ({ours:.2f} s/image) | StableDiffusionXLPipeline "
                f"{args.steps / theirs:6.2f} it/s ({theirs:.2f} s/image) | x{theirs / ours:.2f}"
            )

        report.guarded("SDXL", 60, sdxl)
    print(f"\nreport done in {time.perf_counter() - report.started:.0f} s")


def pixels(png: bytes) -> Any:
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)


if __name__ == "__main__":
    main()
