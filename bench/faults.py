"""Faults: jobs keep their promise while workers, the broker, the database and esd_serve are taken away mid-run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test ESD_BROKER_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/faults.py [--scenario kill|broker|database|serve|all] [--jobs 100]

Scenarios (each on a scratch deployment of its own, dropped at the end; tiny model, 64x64, --steps steps):
  kill      two `serve_endpoint` processes, a random one SIGKILLed --kills times (a replacement started each time,
            as a process manager would).
  broker    a private `redis-server` (no persistence, like the machine's) is SIGKILLed mid-run and started again
            empty --broker-down seconds later; half the jobs are started while it is down.
  database  the database is restarted mid-run: --db-restart runs a command (say `pg_ctlcluster 15 main restart`);
            without it every connection to the scratch database is terminated, three times (what clients see of a
            restart). A gunicorn web process is polled throughout: answers other than 200 and 503 count as errors.
  serve     `make run`'s set-up (esd_serve: SQLite, in-process broker, local store): jobs submitted over HTTP, then
            esd_serve SIGKILLed with jobs queued and started again, then stopped with SIGTERM and started again.

Each reports: jobs succeeded, failed (with reasons), stuck, attempts per job, and completions per job counted from
the workers' own logs ("Job ... succeeded"), which must be one each. Not a test: the figures go in docs/benchmarks.md.
"""

import argparse
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scratch import (  # noqa: E402
    MANAGE,
    Client,
    Scratch,
    admin_token,
    embedded_deployment,
    free_port,
    scratch_deployment,
)

FAST_RECOVERY = {
    "ESD_WORKER_HEARTBEAT_SECONDS": "0.5",
    "ESD_WORKER_DEAD_AFTER_SECONDS": "4",
    "ESD_REQUEUE_AFTER_SECONDS": "3",
    # two CPU workers on one host share its cores (as serve_endpoint --processes arranges for its children)
    "ESD_TORCH_THREADS": str(max(1, (os.cpu_count() or 2) // 2)),
}
SUCCEEDED = re.compile(r"Job ([0-9a-f-]{36}) succeeded")
REQUEUED = re.compile(r"Queued (\d+) waiting inference job")


class Processes:
    """Worker (or server) processes of one scenario, each logging to a file of its own."""

    def __init__(self, scratch: Scratch) -> None:
        self.env = scratch.env
        self.logs = scratch.data / "logs"
        self.logs.mkdir(exist_ok=True)
        self.started: list[subprocess.Popen] = []

    def start(self, *command: str) -> subprocess.Popen:
        log = (self.logs / f"process-{len(self.started)}.log").open("wb")
        process = subprocess.Popen([*MANAGE, *command], env=self.env, stdout=log, stderr=log)
        self.started.append(process)
        return process

    def running(self) -> list[subprocess.Popen]:
        return [process for process in self.started if process.poll() is None]

    def count(self, pattern: re.Pattern) -> list[str]:
        return [match for path in self.logs.iterdir() for match in pattern.findall(path.read_text(errors="replace"))]

    def stop(self) -> None:
        for process in self.running():
            process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def report(title: str, processes: Processes, jobs: list[Any], elapsed: float, submitted: int) -> None:
    statuses = Counter(job["status"] for job in jobs)
    reasons = Counter(job["error"] for job in jobs if job["status"] == "failed")
    attempts = Counter(job["attempts"] for job in jobs)
    completions = Counter(processes.count(SUCCEEDED))
    twice = [job_id for job_id, count in completions.items() if count > 1]
    requeued = sum(int(count) for count in processes.count(REQUEUED))
    print(f"{title}: {submitted} jobs, all ended after {elapsed:.1f} s" if len(jobs) == submitted else title)
    print(f"  statuses: {dict(statuses)}; stuck: {submitted - statuses['succeed'] - statuses['failed']}; "
          f"lost: {submitted - len(jobs)}")  # fmt: skip
    print(f"  failed reasons: {dict(reasons) or 'none'}")
    print(f"  attempts per job: {dict(sorted(attempts.items()))}; queued again by the workers: {requeued}")
    print(f"  completions logged: {sum(completions.values())} for {len(completions)} jobs; run twice: {len(twice)}")


# --- scenarios on PostgreSQL + Redis + serve_endpoint processes ------------------------------------------------------


def orm_jobs(ids: list[str]) -> list[dict[str, Any]]:
    from inferences.models import InferenceJob

    return list(InferenceJob.objects.filter(pk__in=ids).values("status", "error", "attempts"))


def unfinished(ids: list[str]) -> int | None:
    """Jobs not ended yet; None while the database cannot be asked (the database scenario restarts it)."""
    from django.db import DatabaseError, connection

    from inferences.models import InferenceJob

    try:
        return InferenceJob.objects.filter(pk__in=ids).exclude(status__in=["succeed", "failed"]).count()
    except DatabaseError:
        connection.close()
        return None


def submit_jobs(model: str, count: int, first_seed: int, steps: int) -> list[str]:
    from accounts.models import User
    from inferences import services

    admin = User.objects.get(username="admin")
    payload = {"prompt": "a cat", "steps": steps, "width": 64, "height": 64, "sampler_name": "Euler"}
    return [
        str(services.inference_submit(
            actor=admin, task_type="txt2img", models={"Stable-diffusion": [model]},
            payload={**payload, "seed": first_seed + index},
        ).pk)
        for index in range(count)
    ]  # fmt: skip


def with_workers(name: str, redis_db: int, args: argparse.Namespace, broker: str = "", **extra: str) -> Any:
    """A scratch deployment, this process set up on it, two worker processes in service."""
    scratch = scratch_deployment(name, redis_db=redis_db, broker=broker, **FAST_RECOVERY, **extra)
    os.environ.update(scratch.env)
    import django

    django.setup()
    from endpoints.models import Endpoint
    from endpoints.services import endpoint_refresh

    processes = Processes(scratch)
    processes.start("serve_endpoint", "esd-async-local")
    processes.start("serve_endpoint", "esd-async-local")
    deadline = time.monotonic() + 90
    while endpoint_refresh(Endpoint.objects.get()).status != "InService" and time.monotonic() < deadline:
        time.sleep(0.2)
    return scratch, processes


def wait_until_ended(ids: list[str], limit: float, tick: Any = None) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if tick is not None:
            tick(time.monotonic() - started)
        if unfinished(ids) == 0:
            break
        time.sleep(0.2)
    return time.monotonic() - started


def scenario_kill(args: argparse.Namespace) -> None:
    scratch, processes = with_workers("esd_faults_kill", 7, args)
    try:
        ids = submit_jobs(scratch.model.name, args.jobs, 0, args.steps)
        rng = random.Random(7)
        kills = [0]

        def tick(elapsed: float) -> None:
            if kills[0] < args.kills and elapsed > 3 + kills[0] * 4:
                victim = rng.choice(processes.running())
                os.kill(victim.pid, signal.SIGKILL)
                kills[0] += 1
                print(f"  {elapsed:5.1f} s: killed worker pid {victim.pid} (kill {kills[0]})")
                processes.start("serve_endpoint", "esd-async-local")

        elapsed = wait_until_ended(ids, 600, tick)
        report(f"kill: 2 worker processes, {kills[0]} SIGKILLs", processes, orm_jobs(ids), elapsed, len(ids))
    finally:
        processes.stop()
        finish(scratch)


def scenario_broker(args: argparse.Namespace) -> None:
    port = free_port()
    redis_command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    redis_server = subprocess.Popen(redis_command, stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    scratch, processes = with_workers("esd_faults_broker", 0, args, broker=f"redis://127.0.0.1:{port}/0")
    try:
        ids = submit_jobs(scratch.model.name, args.jobs // 2, 0, args.steps)
        began = time.monotonic()
        time.sleep(2)
        redis_server.kill()
        redis_server.wait()
        print(f"  {time.monotonic() - began:5.1f} s: Redis SIGKILLed with {unfinished(ids)} jobs unfinished")
        ids += submit_jobs(scratch.model.name, args.jobs - len(ids), len(ids), args.steps)  # while it is down
        time.sleep(max(0.0, args.broker_down - (time.monotonic() - began - 2)))
        redis_server = subprocess.Popen(redis_command, stdout=subprocess.DEVNULL)
        print(f"  {time.monotonic() - began:5.1f} s: Redis started again, empty")
        elapsed = wait_until_ended(ids, 600) + time.monotonic() - began
        report(f"broker: Redis down {args.broker_down:.0f} s mid-run", processes, orm_jobs(ids), elapsed, len(ids))
    finally:
        processes.stop()
        redis_server.kill()
        finish(scratch)


def scenario_database(args: argparse.Namespace) -> None:
    port = free_port()
    scratch, processes = with_workers("esd_faults_db", 8, args, ESD_PUBLIC_URL=f"http://127.0.0.1:{port}")
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    web = subprocess.Popen(
        [gunicorn, "esd.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "--log-level", "critical"],
        cwd=ROOT, env=scratch.env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = Client(f"http://127.0.0.1:{port}/prod/", admin_token(scratch.env))
    client.in_service()
    answers: Counter = Counter()
    polling = threading.Event()

    def poll() -> None:
        while not polling.is_set():
            try:
                answers[client.call("GET", "inferences?limit=5")[0]] += 1
            except OSError:
                answers["no answer"] += 1
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    try:
        ids = submit_jobs(scratch.model.name, args.jobs, 0, args.steps)
        poller.start()
        restarts = [0]
        planned = 1 if args.db_restart else 3

        def tick(elapsed: float) -> None:
            if restarts[0] < planned and elapsed > 3 + restarts[0] * 4:
                restarts[0] += 1
                if args.db_restart:
                    subprocess.run(args.db_restart, shell=True, check=True)  # noqa: S602 (the operator's command)
                    print(f"  {elapsed:5.1f} s: ran {args.db_restart!r}")
                else:
                    print(f"  {elapsed:5.1f} s: terminated {terminate_connections(scratch)} database connections")

        elapsed = wait_until_ended(ids, 600, tick)
        polling.set()
        poller.join()
        restarted = f"{args.db_restart!r}" if args.db_restart else "3 x every connection terminated"
        report(f"database: {restarted}", processes, orm_jobs(ids), elapsed, len(ids))
        errors = sum(count for answer, count in answers.items() if answer not in (200, 503))
        print(f"  web answers while polling GET /inferences: {dict(answers)}; errors (not 200/503): {errors}")
        print(f"  after the last restart: {client.call('GET', 'inferences?limit=5')[0]}")
    finally:
        polling.set()
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=30)
        processes.stop()
        finish(scratch)


def terminate_connections(scratch: Scratch) -> int:
    import psycopg

    with psycopg.connect(scratch.base_db, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [scratch.name],
        ).fetchall()
    return len(rows)


def finish(scratch: Scratch) -> None:
    from django.db import connections

    connections.close_all()
    scratch.drop()


# --- esd_serve, embedded -------------------------------------------------------------------------------------------


def scenario_serve(args: argparse.Namespace) -> None:
    port = free_port()
    scratch = embedded_deployment("esd_faults_serve", ESD_TORCH_THREADS=str(os.cpu_count() or 1))
    processes = Processes(scratch)
    command = ("esd_serve", "--port", str(port))
    server = processes.start(*command)
    client = Client(f"http://127.0.0.1:{port}/prod/", admin_token(scratch.env))
    jobs = args.jobs // 3
    try:
        client.in_service()
        began = time.monotonic()
        ids = []
        for seed in range(jobs):
            status, job_id = client.submit(scratch.model.name, {"prompt": "a cat", "steps": args.steps, "seed": seed,
                                                                 "width": 64, "height": 64})  # fmt: skip
            assert status == 202, status
            ids.append(job_id)

        def states() -> list[dict[str, Any]]:  # read from the SQLite file itself: attempts are not on the wire
            with closing(sqlite3.connect(scratch.data / "db.sqlite3", timeout=20)) as db:
                rows = db.execute("SELECT id, status, error, attempts FROM inferences_inferencejob").fetchall()
            wanted = {job_id.replace("-", "") for job_id in ids}
            return [
                {"status": status, "error": error, "attempts": attempts}
                for key, status, error, attempts in rows
                if str(key).replace("-", "") in wanted
            ]

        def done() -> int:
            return sum(job["status"] == "succeed" for job in states())

        for how, after in ((signal.SIGKILL, jobs // 4), (signal.SIGTERM, jobs // 2)):
            while done() < after and time.monotonic() - began < 300:
                time.sleep(0.2)
            waiting = len(ids) - done()
            server.send_signal(how)
            server.wait(timeout=60)
            print(f"  {time.monotonic() - began:5.1f} s: esd_serve stopped with {signal.Signals(how).name}, "
                  f"{waiting} jobs not finished")  # fmt: skip
            server = processes.start(*command)
            client.in_service()
        while done() < len(ids) and time.monotonic() - began < 600:
            time.sleep(0.5)
        elapsed = time.monotonic() - began
        report("serve: esd_serve killed, then stopped, with jobs queued", processes, states(), elapsed, len(ids))
    finally:
        processes.stop()
        scratch.drop()


SCENARIOS = {
    "kill": scenario_kill,
    "broker": scenario_broker,
    "database": scenario_database,
    "serve": scenario_serve,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--broker-down", type=float, default=5.0, help="seconds Redis stays down")
    parser.add_argument("--db-restart", default="", help="a command that restarts the database server")
    args = parser.parse_args()
    chosen = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    if len(chosen) > 1:  # Django is set up once per process: each scenario runs in a child of its own
        for name in chosen:
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--scenario", name], check=False)
        return
    SCENARIOS[chosen[0]](args)


if __name__ == "__main__":
    main()
