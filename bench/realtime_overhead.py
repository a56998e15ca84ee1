"""Real-time overhead: HTTP `PUT /inferences/{id}/start` → 200, minus the engine's own run time for that job.

    .venv/bin/python bench/realtime_overhead.py [--jobs 30] [--redis redis://127.0.0.1:6379/0]

Starts `manage.py esd_serve` (waitress + in-process endpoint worker, as `make run` does) on a fresh SQLite data
folder, once with the embedded broker and once with Redis (when --redis is given), imports the tiny checkpoint,
creates a Real-time endpoint, warms the model, then times 30 jobs (64x64, 2 steps). The overhead is everything a
job costs beyond `Engine.run`: the start route's checks, the queue, claiming, reading the payload, the model cache,
writing PNGs and the result JSON, finishing the row, waking the waiting request and answering with presigned URLs.
Goal: p50 <= 30 ms. Not a test: the figures go in docs/benchmarks.md.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

SETUP = """
from accounts import services
from accounts.models import User
from endpoints.services import endpoint_create
admin = User.objects.get(username="admin")
endpoint_create(actor=admin, suffix="bench", endpoint_type="Real-time", instance_type="cpu", count=1,
                autoscaling=False, roles=["IT Operator"])
print(services.api_token_create(user=admin, name="bench")[1])
"""


def call(method: str, url: str, token: str, body: object = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (loopback)
            text = response.read()
            return response.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(broker: str | None, jobs: int) -> list[float]:
    data = Path(tempfile.mkdtemp(prefix="esd-bench-rt-"))
    (data / "static").mkdir()
    env = {**os.environ, "ESD_DATA_DIR": str(data), "ESD_LOG_LEVEL": "WARNING", "ESD_WORKER_POLL_MS": "10"}
    env.setdefault("DJANGO_SECRET_KEY", "bench-only-realtime-key")
    env.pop("DATABASE_URL", None)
    env.pop("ESD_BROKER_URL", None)
    if broker:
        env["ESD_BROKER_URL"] = broker
    manage = [PY, str(ROOT / "manage.py")]
    quiet = {"env": env, "check": True, "capture_output": True, "text": True}
    subprocess.run([*manage, "migrate", "--noinput"], **quiet)
    subprocess.run([*manage, "esd_bootstrap", "--username", "admin", "--password", "bench-pw-1"], **quiet)
    token = subprocess.run([*manage, "shell", "-c", SETUP], **quiet).stdout.strip().splitlines()[-1]
    model = data / "tiny-sd1.safetensors"
    subprocess.run([*manage, "make_tiny_checkpoint", str(model)], **quiet)
    subprocess.run([*manage, "esd_demo", str(model)], **quiet)
    port = free_port()
    server = subprocess.Popen([*manage, "esd_serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/prod/"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, body = call("GET", base + "endpoints", token)
                if status == 200 and body["data"]["endpoints"][0]["endpoint_status"] == "InService":
                    break
            except OSError:
                pass
            time.sleep(0.2)
        payload = json.dumps({"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 1}).encode()
        overheads = []
        for index in range(jobs + 3):  # the first three warm the imports, the model and the caches
            _, created = call("POST", base + "inferences", token, {
                "task_type": "txt2img", "inference_type": "Real-time",
                "models": {"Stable-diffusion": [model.name]}, "filters": {},
            })  # fmt: skip
            inference = created["data"]["inference"]
            status, _ = call("PUT", inference["api_params_s3_upload_url"], token, raw=payload)
            assert status == 200
            started = time.perf_counter()
            status, body = call("PUT", f"{base}inferences/{inference['id']}/start", token)
            elapsed = time.perf_counter() - started
            assert status == 200, body
            if index >= 3:
                overheads.append((elapsed - body["data"]["timings"]["engine_seconds"]) * 1000)
        return overheads
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--redis", help="also measure with this Redis broker URL")
    args = parser.parse_args()
    print(f"Real-time start -> 200 minus Engine.run, {args.jobs} jobs, tiny model 64x64 2 steps, esd_serve + SQLite")
    for label, broker in (("in-process broker", None), ("Redis", args.redis)):
        if label == "Redis" and not broker:
            continue
        overheads = sorted(run(broker, args.jobs))
        p90 = overheads[int(len(overheads) * 0.9) - 1]
        print(f"  {label:<18} p50 {statistics.median(overheads):6.1f} ms   p90 {p90:6.1f} ms   (goal p50 <= 30 ms)")


if __name__ == "__main__":
    main()
