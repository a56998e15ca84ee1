"""Dynamic batching: N concurrent txt2img jobs through one real worker process, batching off beside on.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test ESD_BROKER_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/batching.py [--jobs 16] [--rounds 5] [--steps 8] [--window-ms 50]

A scratch deployment (PostgreSQL, Redis, the tiny model, bench/scratch.py); one `serve_endpoint` process at a time,
started with ESD_BATCH_WINDOW_MS=0 (off) or --window-ms (on), the rounds alternating between them so both see the
same machine. Each round submits --jobs jobs at once (batch 1, 64x64, Euler a, each its own prompt and seed) and
waits for all; jobs/s is jobs over the time from the first submission to the last completion, latency a job's
start to its completion. Prints the medians over rounds, the ratios, and whether every job's picture was the same
byte for byte with batching on and off. Not a test: the figures go in docs/benchmarks.md.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.faults import Processes  # noqa: E402
from bench.scratch import scratch_deployment  # noqa: E402
from bench.stats import percentile  # noqa: E402


def in_service(timeout: float = 90) -> None:
    from endpoints.models import Endpoint
    from endpoints.services import endpoint_refresh

    deadline = time.monotonic() + timeout
    while endpoint_refresh(Endpoint.objects.get()).status != "InService":
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not come into service")
        time.sleep(0.1)


def one_round(model: str, jobs: int, steps: int, round_index: int) -> tuple[float, list[float], list[bytes], int]:
    from accounts.models import User
    from esd.storage import get_storage
    from inferences import services
    from inferences.models import InferenceJob

    admin = User.objects.get(username="admin")
    began = time.time()
    ids = [
        str(services.inference_submit(
            actor=admin, task_type="txt2img", models={"Stable-diffusion": [model]},
            payload={"prompt": f"a watercolour of a harbour, boat {k}", "negative_prompt": "blurry", "seed": 1000 + k,
                     "steps": steps, "width": 64, "height": 64, "sampler_name": "Euler a", "cfg_scale": 7.0},
        ).pk)
        for k in range(jobs)
    ]  # fmt: skip
    while InferenceJob.objects.filter(pk__in=ids).exclude(status__in=["succeed", "failed"]).exists():
        time.sleep(0.02)
    rows = {str(row.pk): row for row in InferenceJob.objects.filter(pk__in=ids)}
    failed = [row.error for row in rows.values() if row.status != "succeed"]
    if failed:
        raise RuntimeError(f"jobs failed: {failed[:3]}")
    last = max(row.complete_time.timestamp() for row in rows.values())
    latencies = [(row.complete_time - row.start_time).total_seconds() for row in rows.values()]
    storage = get_storage()
    pictures = []
    for job_id in ids:
        with storage.open(rows[job_id].result_folder + "image_0.png") as stream:
            pictures.append(stream.read())
    loops = len({row.batch_id or row.pk for row in rows.values()})
    return jobs / (last - began), latencies, pictures, loops


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--window-ms", type=int, default=50)
    args = parser.parse_args()

    scratch = scratch_deployment("esd_bench_batching", redis_db=13, ESD_TORCH_THREADS=str(os.cpu_count() or 1))
    os.environ.update(scratch.env)
    import django

    django.setup()
    modes = {"off": "0", "on": str(args.window_ms)}
    figures: dict[str, dict[str, list[float]]] = {
        mode: {"rate": [], "p50": [], "p95": [], "loops": []} for mode in modes
    }
    pictures: dict[str, list[bytes]] = {}
    try:
        for round_index in range(args.rounds + 1):  # round 0 of each mode warms the worker up (model load)
            for mode, window in modes.items():
                processes = Processes(scratch)
                processes.env = {**scratch.env, "ESD_BATCH_WINDOW_MS": window, "ESD_MAX_BATCH_IMAGES": "16"}
                processes.start("serve_endpoint", "esd-async-local")
                try:
                    in_service()
                    rate, latencies, round_pictures, loops = one_round(
                        scratch.model.name, args.jobs, args.steps, round_index
                    )
                finally:
                    processes.stop()
                if round_index == 0:
                    pictures[mode] = round_pictures
                    continue
                figures[mode]["rate"].append(rate)
                figures[mode]["p50"].append(statistics.median(latencies))
                figures[mode]["p95"].append(percentile(latencies, 0.95))
                figures[mode]["loops"].append(loops)
    finally:
        scratch.drop()

    def median(mode: str, key: str) -> float:
        return statistics.median(figures[mode][key])

    print(
        f"dynamic batching: {args.jobs} concurrent jobs, tiny model, 64x64, {args.steps} steps, Euler a, one worker "
        f"process ({os.cpu_count()} CPUs), medians of {args.rounds} rounds, window {args.window_ms} ms"
    )
    print(f"  {'batching':<9} {'jobs/s':>7} {'p50 s':>7} {'p95 s':>7} {'loops':>6}")
    for mode in modes:
        print(
            f"  {mode:<9} {median(mode, 'rate'):7.2f} {median(mode, 'p50'):7.2f} {median(mode, 'p95'):7.2f} "
            f"{median(mode, 'loops'):6.0f}"
        )
    print(
        f"  on/off: jobs/s x{median('on', 'rate') / median('off', 'rate'):.2f}, "
        f"p50 x{median('on', 'p50') / median('off', 'p50'):.2f}, p95 x{median('on', 'p95') / median('off', 'p95'):.2f}"
    )
    same = sum(a == b for a, b in zip(pictures["off"], pictures["on"], strict=True))
    print(f"  pictures identical with batching on and off: {same}/{args.jobs}")


if __name__ == "__main__":
    main()
