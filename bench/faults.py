"""Faults: jobs across two `serve_endpoint` worker processes while workers are killed with SIGKILL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test ESD_BROKER_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/faults.py [--jobs 100] [--kills 3]

Uses a scratch database (`esd_faults`, dropped at the end) and its own Redis database number, a fresh data
folder and the tiny model. Submits the jobs, kills a random worker process --kills times (starting a replacement
each time, as a process manager would), and waits until every job has ended. Reports: succeeded, failed (with
reasons), stuck, jobs that ran more than once (attempts), and completions per job counted from the workers' own
logs ("Job ... succeeded"), which must be at most one each. Not a test: the figures go in README.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import MANAGE, scratch_deployment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    scratch = scratch_deployment(
        "esd_faults",
        redis_db=7,
        ESD_WORKER_HEARTBEAT_SECONDS="0.5",
        ESD_WORKER_DEAD_AFTER_SECONDS="4",
        # two CPU workers on one host share its cores (as serve_endpoint --processes arranges for its children)
        ESD_TORCH_THREADS=str(max(1, (os.cpu_count() or 2) // 2)),
    )
    env, data, model = scratch.env, scratch.data, scratch.model

    logs = data / "logs"
    logs.mkdir()
    workers: list[subprocess.Popen] = []

    def start_worker() -> None:
        log = (logs / f"worker-{len(workers)}.log").open("wb")
        workers.append(
            subprocess.Popen([*MANAGE, "serve_endpoint", "esd-async-local"], env=env, stdout=log, stderr=log)
        )

    os.environ.update(env)
    import django

    django.setup()
    from accounts.models import User
    from endpoints.models import Endpoint
    from endpoints.services import endpoint_refresh
    from inferences import services
    from inferences.models import InferenceJob

    try:
        start_worker()
        start_worker()
        deadline = time.monotonic() + 90
        while endpoint_refresh(Endpoint.objects.get()).status != "InService" and time.monotonic() < deadline:
            time.sleep(0.2)
        admin = User.objects.get(username="admin")
        payload = {"prompt": "a cat", "steps": args.steps, "width": 64, "height": 64, "sampler_name": "Euler"}
        started = time.monotonic()
        ids = []
        for index in range(args.jobs):
            job = services.inference_submit(
                actor=admin, task_type="txt2img", checkpoint_name=model.name, payload={**payload, "seed": index}
            )
            ids.append(str(job.pk))
        kills = 0
        rng = random.Random(7)
        while time.monotonic() - started < 600:
            unfinished = InferenceJob.objects.exclude(status__in=["succeed", "failed"]).count()
            if unfinished == 0:
                break
            if kills < args.kills and time.monotonic() - started > 3 + kills * 4:
                running = [w for w in workers if w.poll() is None]
                victim = rng.choice(running)
                os.kill(victim.pid, signal.SIGKILL)
                kills += 1
                print(f"  {time.monotonic() - started:5.1f} s: killed worker pid {victim.pid} (kill {kills})")
                start_worker()
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        jobs = list(InferenceJob.objects.filter(pk__in=ids))
        statuses = Counter(job.status for job in jobs)
        reasons = Counter(job.error for job in jobs if job.status == "failed")
        attempts = Counter(job.attempts for job in jobs)
        completions = Counter(
            match for path in logs.iterdir() for match in re.findall(r"Job ([0-9a-f-]{36}) succeeded", path.read_text())
        )
        twice = [job_id for job_id, count in completions.items() if count > 1]
        print(f"{args.jobs} jobs, 2 worker processes, {kills} SIGKILLs, all ended after {elapsed:.1f} s")
        print(f"  statuses: {dict(statuses)}; stuck: {args.jobs - statuses['succeed'] - statuses['failed']}")
        print(f"  failed reasons: {dict(reasons) or 'none'}")
        print(f"  attempts per job: {dict(sorted(attempts.items()))}")
        print(f"  completions logged: {sum(completions.values())} for {len(completions)} jobs; run twice: {len(twice)}")
        print(json.dumps({"lost": len(set(ids) - {str(job.pk) for job in jobs})}))
        for key in (
            "queued_seconds",
            "fetch_seconds",
            "model_seconds",
            "inference_seconds",
            "upload_seconds",
            "run_seconds",
        ):
            values = sorted(job.timings.get(key, 0.0) for job in jobs if job.timings)
            if values:
                print(f"  {key:<18} median {values[len(values) // 2]:7.3f} s")
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        from django.db import connections

        connections.close_all()
        scratch.drop()


if __name__ == "__main__":
    main()
