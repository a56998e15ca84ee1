"""Load: 100 concurrent clients for 60 s against gunicorn on PostgreSQL, with a worker running jobs.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test ESD_BROKER_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/load.py [--clients 100] [--seconds 60]

Scratch database `esd_load` (dropped at the end), its own Redis database number, the local store served by
gunicorn itself, one `serve_endpoint` worker process on the tiny model. Each client loops over a mix: list jobs
(40 %), get a job (30 %), download a finished job's PNG (20 %), and create + upload + start a job (10 %, at most
2 per second overall so the worker can keep up). Reports per route: requests, errors, p50 and p99 latency; jobs
submitted, finished and lost once the queue drains; resident memory of the web and worker processes after
warm-up and at the end. Not a test: the figures go in docs/benchmarks.md.
"""

import argparse
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scratch import MANAGE, Client, admin_token, free_port, scratch_deployment  # noqa: E402


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().split()[3]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--web-workers", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    scratch = scratch_deployment(
        "esd_load",
        redis_db=6,
        ESD_PUBLIC_URL=f"http://127.0.0.1:{port}",
        ESD_TORCH_THREADS="1",
        ESD_LOG_LEVEL="WARNING",
        DJANGO_CONN_MAX_AGE="60",
    )
    env, model = scratch.env, scratch.model
    token = admin_token(env)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    web = subprocess.Popen(
        [gunicorn, "esd.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(args.web_workers), "-k", "gthread",
         "--threads", "16", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    worker = subprocess.Popen([*MANAGE, "serve_endpoint", "esd-async-local"], env=env)
    client = Client(f"http://127.0.0.1:{port}/prod/", token)
    payload = {"prompt": "a cat", "steps": 8, "width": 64, "height": 64}
    submitted: list[str] = []
    lock = threading.Lock()

    def submit() -> tuple[int, dict]:
        status, job_id = client.submit(model.name, payload)
        if status == 202:
            with lock:
                submitted.append(job_id)
        return status, {}

    try:
        deadline = time.monotonic() + 60
        client.in_service()
        for _ in range(5):  # finished jobs to read and download
            submit()
        finished: list[dict] = []
        while len(finished) < 5 and time.monotonic() < deadline + 60:
            finished = [
                body["data"] for job_id in submitted
                if (body := client.call("GET", f"inferences/{job_id}")[1]).get("data", {}).get("status") == "succeed"
            ]  # fmt: skip
            time.sleep(0.5)
        images = [url for job in finished for url in job["img_presigned_urls"]]
        web_pids = children(web.pid)
        latencies: dict[str, list[float]] = defaultdict(list)
        errors: dict[str, int] = defaultdict(int)
        stop_at = time.monotonic() + args.seconds
        next_submit = [time.monotonic()]
        memory: list[tuple[float, float]] = []

        def operation(rng: random.Random) -> tuple[str, tuple[int, dict], set[int]]:
            roll = rng.random()
            if roll < 0.1:
                with lock:
                    allowed = time.monotonic() >= next_submit[0]
                    if allowed:
                        next_submit[0] = time.monotonic() + 0.5
                if allowed:
                    return "create+upload+start", submit(), {202}
            if roll < 0.4:
                return "GET /inferences?limit=20", client.call("GET", "inferences?limit=20"), {200}
            if roll < 0.7:
                job = rng.choice(finished)
                return "GET /inferences/{id}", client.call("GET", f"inferences/{job['InferenceJobId']}"), {200}
            return "GET image (presigned)", client.call("GET", rng.choice(images)), {200}

        def run(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop_at:
                begun = time.perf_counter()
                try:
                    route, (status, _), ok = operation(rng)
                except Exception:
                    route, status, ok = "exception", 0, {200}
                elapsed = (time.perf_counter() - begun) * 1000
                with lock:
                    latencies[route].append(elapsed)
                    if status not in ok:
                        errors[route] += 1

        def sample() -> None:
            while time.monotonic() < stop_at:
                memory.append((sum(rss_mib(pid) for pid in web_pids), rss_mib(worker.pid)))
                time.sleep(5)

        threads = [threading.Thread(target=run, args=(seed,)) for seed in range(args.clients)]
        sampler = threading.Thread(target=sample)
        began = time.monotonic()
        for thread in [*threads, sampler]:
            thread.start()
        for thread in [*threads, sampler]:
            thread.join()
        wall = time.monotonic() - began
        total = sum(len(values) for values in latencies.values())
        print(f"{args.clients} clients, {wall:.0f} s, gunicorn {args.web_workers}x16 threads, PostgreSQL, Redis, "
              f"1 worker: {total} requests ({total / wall:.0f}/s), errors {sum(errors.values())}")  # fmt: skip
        for route, values in sorted(latencies.items()):
            values.sort()
            print(f"  {route:<28} {len(values):6d} req  errors {errors[route]:3d}  p50 "
                  f"{statistics.median(values):7.1f} ms  p99 {values[int(len(values) * 0.99) - 1]:7.1f} ms")  # fmt: skip
        drain = time.monotonic() + 180
        while time.monotonic() < drain:
            states = [client.call("GET", f"inferences/{job_id}")[1]["data"]["status"] for job_id in submitted]
            if all(state in ("succeed", "failed") for state in states):
                break
            time.sleep(1)
        print(f"  jobs submitted {len(submitted)}, succeed {states.count('succeed')}, failed {states.count('failed')}, "
              f"unfinished {len(states) - states.count('succeed') - states.count('failed')}")  # fmt: skip
        if len(memory) >= 3:
            print(f"  RSS web (sum of {len(web_pids)} workers): {memory[1][0]:.0f} MiB after warm-up, "
                  f"{memory[-1][0]:.0f} MiB at the end; worker: {memory[1][1]:.0f} -> {memory[-1][1]:.0f} MiB")  # fmt: skip
            minutes = memory[::12]  # sampled every 5 s
            print("  RSS each minute, web: " + ", ".join(f"{web:.0f}" for web, _ in minutes)
                  + " MiB; worker: " + ", ".join(f"{worker:.0f}" for _, worker in minutes) + " MiB")  # fmt: skip
    finally:
        web.send_signal(signal.SIGTERM)
        worker.send_signal(signal.SIGTERM)
        for process in (web, worker):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        scratch.drop()


if __name__ == "__main__":
    main()
