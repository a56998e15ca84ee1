"""Real processes: serve_endpoint workers (killed with SIGKILL, drained by deletion) and esd_serve's restart
recovery. serve_endpoint needs a database and broker shared between processes (PostgreSQL and Redis or RabbitMQ,
as on CI); esd_serve runs on its own SQLite file."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dramatiq
import pytest
from django.db import connection
from dramatiq.brokers.stub import StubBroker

from endpoints import services
from endpoints.models import Endpoint
from tests.conftest import wait_for
from tests.helpers import RssSampler, free_port, put_file, safetensors_bytes, write_sparse_safetensors

ROOT = Path(__file__).resolve().parents[2]
FAST = {"ESD_WORKER_HEARTBEAT_SECONDS": "0.2", "ESD_WORKER_DEAD_AFTER_SECONDS": "1.5"}


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "ESD_", "DATABASE"))}
    env.update(DJANGO_SETTINGS_MODULE="esd.settings", DJANGO_SECRET_KEY="test-only-child-process-key", **FAST, **extra)
    return env


def shared_services() -> dict[str, str]:
    """Environment that points a child process at this test's database and broker, or a skip/fail."""
    shared = connection.vendor == "postgresql" and not isinstance(dramatiq.get_broker(), StubBroker)
    if not shared:
        reason = "serve_endpoint tests need PostgreSQL and Redis/RabbitMQ shared with a child process"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI provides them)")
        pytest.skip(reason + " (set DATABASE_URL and ESD_BROKER_URL; CI does)")
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return clean_env(DATABASE_URL=url, ESD_BROKER_URL=os.environ["ESD_BROKER_URL"])


def manage(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, **kwargs)


@pytest.fixture
def endpoint(transactional_db, admin_user):
    return services.endpoint_create(
        actor=admin_user, suffix="procs", endpoint_type="Async", instance_type="cuda", count=2, autoscaling=False,
        roles=["IT Operator"],
    )  # fmt: skip


def live(endpoint: Endpoint) -> tuple[str, int] | None:
    found = Endpoint.objects.filter(pk=endpoint.pk).first()
    if found is None:
        return None
    refreshed = services.endpoint_refresh(found)
    return refreshed.status, refreshed.live_count


def test_two_workers_one_killed_then_deleted(endpoint, settings):
    env = shared_services()
    settings.ESD_WORKER_DEAD_AFTER_SECONDS = 1.5
    supervisor = manage("serve_endpoint", endpoint.name, "--processes", "2", env=env)
    try:
        assert wait_for(lambda: live(endpoint) == ("InService", 2), timeout=60)
        victim = endpoint.workers.order_by("started_at").first()
        os.kill(victim.pid, signal.SIGKILL)
        assert wait_for(lambda: live(endpoint) == ("InService", 1), timeout=30)
        services.endpoint_delete_many(actor=endpoint.created_by, endpoints=[Endpoint.objects.get(pk=endpoint.pk)])
        assert wait_for(lambda: live(endpoint) is None, timeout=30)  # drained, exited, row gone
        assert supervisor.wait(timeout=30) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


def test_sigterm_stops_a_worker_cleanly(endpoint, settings):
    env = shared_services()
    worker = manage("serve_endpoint", endpoint.name, env=env)
    try:
        assert wait_for(lambda: live(endpoint) == ("InService", 1), timeout=60)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        record = endpoint.workers.get()
        assert record.stopped_at is not None  # deregistered, not merely silent
        assert live(endpoint)[1] == 0
    finally:
        if worker.poll() is None:
            worker.kill()


@pytest.fixture
def embedded_env(tmp_path) -> dict[str, str]:
    """A migrated SQLite data folder of its own, for commands run in child processes."""
    env = clean_env(ESD_DATA_DIR=str(tmp_path), ESD_DOWNLOAD_ALLOW_HOSTS="127.0.0.1")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    return env


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def test_serve_endpoint_refuses_an_unknown_endpoint(embedded_env):
    result = run("serve_endpoint", "esd-async-nope", env=embedded_env)
    assert result.returncode != 0
    assert "no endpoint named 'esd-async-nope'" in result.stderr


def test_serve_endpoint_refuses_fp8_on_a_device_without_float8_tensor_cores(embedded_env):
    result = run("serve_endpoint", "esd-async-any", "--device", "cpu", env={**embedded_env, "ESD_ENGINE_DTYPE": "fp8"})
    assert result.returncode != 0
    assert "ESD_ENGINE_DTYPE=fp8 needs a CUDA GPU with float8 tensor cores" in result.stderr


def test_serve_endpoint_needs_a_shared_broker(embedded_env):
    created = run(
        "shell", "-c",
        "from accounts import services as a; from endpoints import services as e; "
        "u = a.admin_ensure(username='x', password='long-password-1'); "
        "e.endpoint_create(actor=u, suffix='solo', endpoint_type='Async', instance_type='cpu', count=1, "
        "autoscaling=False, roles=['IT Operator'])",
        env=embedded_env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    result = run("serve_endpoint", "esd-async-solo", env=embedded_env)
    assert result.returncode != 0
    assert "set ESD_BROKER_URL" in result.stderr


# --- esd_serve ------------------------------------------------------------------------------------------------------


def api(port: int, method: str, path: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/prod/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read() or b"{}")


def stop_serve(server: subprocess.Popen) -> None:
    """SIGTERM, and a kill if it has not exited 30 s later (a test's clean-up)."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def start_serve(port: int, env: dict[str, str], *args: str) -> subprocess.Popen:
    process = manage("esd_serve", "--port", str(port), *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def up() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/prod/ping", timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(up, timeout=60, interval=0.2)
    return process


def test_esd_serve_serves_workers_and_recovers_after_a_restart(embedded_env, file_server):
    env = embedded_env
    first_run = run("esd_bootstrap", "--first-run", env=env)
    token = re.search(r"API token:\s+(\S+)", first_run.stdout).group(1)
    file_server.serve_bytes("/files/recovered.safetensors", safetensors_bytes())
    # A download the database says is unfinished, as if the server had died in the middle of it.
    created = run(
        "shell", "-c",
        "from accounts import grants; from accounts.models import User; "
        "from checkpoints.models import Checkpoint, CheckpointFile; "
        "c = Checkpoint.objects.create(type='Lora', status='Downloading', created_by=User.objects.get(), "
        f"source_url='{file_server.url('/files/recovered.safetensors')}'); "
        "grants.grant_new(c, owner=c.created_by, visible_to=['IT Operator']); "
        "CheckpointFile.objects.create(checkpoint=c, name='recovered.safetensors')",
        env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    port = free_port()
    server = start_serve(port, env)
    try:

        def checkpoint_status() -> str:
            return api(port, "GET", "checkpoints", token)["data"]["checkpoints"][0]["status"]

        assert wait_for(lambda: checkpoint_status() == "Active", timeout=30)
        body = {"endpoint_name": "embedded", "endpoint_type": "Async", "instance_type": "cpu",
                "initial_instance_count": 1, "autoscaling_enabled": False, "assign_to_roles": ["IT Operator"],
                "creator": "admin"}  # fmt: skip
        assert api(port, "POST", "endpoints", token, body)["statusCode"] == 202

        def endpoint_state() -> tuple[str, str]:
            [item] = api(port, "GET", "endpoints", token)["data"]["endpoints"]
            return item["endpoint_status"], item["current_instance_count"]

        assert wait_for(lambda: endpoint_state() == ("InService", "1"), timeout=30)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        said = server.stdout.read().decode()
        assert "Stopping: no job is running." in said and "ESD server stopped" in said
        stopped = run(
            "shell", "-c", "from endpoints.models import Endpoint; print(Endpoint.objects.get().status)", env=env
        )
        assert stopped.stdout.strip().splitlines()[-1] == "Stopped", stopped.stderr  # a clean stop, not a failure
        server = start_serve(port, env)
        assert wait_for(lambda: endpoint_state() == ("InService", "1"), timeout=30)
    finally:
        stop_serve(server)


def test_a_killed_workers_job_is_redelivered_to_another(endpoint, settings):
    env = shared_services()
    settings.ESD_WORKER_DEAD_AFTER_SECONDS = 1.5
    supervisor = manage("serve_endpoint", endpoint.name, "--processes", "2", env=env)
    try:
        assert wait_for(lambda: live(endpoint) == ("InService", 2), timeout=60)
        probe_id = services.endpoint_probe_send(endpoint=endpoint, hold_seconds=3.0)
        busy = wait_for(lambda: endpoint.workers.filter(current_job__contains=probe_id).first(), timeout=30)
        os.kill(busy.pid, signal.SIGKILL)  # mid-job
        answered = wait_for(
            lambda: Endpoint.objects.filter(pk=endpoint.pk, last_probe_id=probe_id).first(), timeout=90, interval=0.2
        )
        assert not answered.last_probe_worker.endswith(f":{busy.pid}")  # the other worker ran it
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(timeout=30)
        except subprocess.TimeoutExpired:
            supervisor.kill()


def test_idle_connections_do_not_starve_esd_serve(embedded_env):
    """200 clients that send half a request and go quiet (a slowloris) must not stop anyone else: /ping still
    answers within a second, and the server closes each silent connection after ESD_SERVE_CHANNEL_TIMEOUT."""
    port = free_port()
    server = start_serve(port, {**embedded_env, "ESD_SERVE_CHANNEL_TIMEOUT": "3"}, "--no-workers")
    idle: list[socket.socket] = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /prod/roles HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
            idle.append(sock)
        durations = []
        for _ in range(5):
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/prod/ping", timeout=5) as response:
                assert json.loads(response.read())["message"] == "pong"
            durations.append(time.monotonic() - started)
        assert max(durations) < 1.0, durations

        def closed_by_server(sock: socket.socket) -> bool:
            sock.settimeout(15)
            try:
                return sock.recv(1) == b""
            except ConnectionResetError:
                return True

        assert all(closed_by_server(sock) for sock in idle)
    finally:
        for sock in idle:
            sock.close()
        stop_serve(server)


def test_esd_serve_takes_a_checkpoint_larger_than_waitress_own_limit(embedded_env, tmp_path):
    """Issue 29.1: `make run` answered a 1.5 GB upload with waitress's "Request Entity Too Large ... max_body of
    1073741824". A 1.25 GiB checkpoint in one presigned PUT, as the README's recipe sends it: stored whole, in
    bounded memory, hashed, Active."""
    first_run = run("esd_bootstrap", "--first-run", env=embedded_env)
    token = re.search(r"API token:\s+(\S+)", first_run.stdout).group(1)
    model = write_sparse_safetensors(tmp_path / "big.safetensors", 1280 * 1024**2 + 17)
    port = free_port()
    server = start_serve(port, embedded_env, "--no-workers")
    try:
        body = {"checkpoint_type": "Stable-diffusion", "filenames": [{"filename": model.name, "parts_number": 1}],
                "params": {"message": "large"}}  # fmt: skip
        created = api(port, "POST", "checkpoints", token, body)["data"]
        rss = RssSampler(server.pid)
        status, headers, answer = put_file(created["s3PresignUrl"][model.name][0], model)
        growth = rss.stop()
        assert status == 200, answer
        tags = {model.name: [{"ETag": headers["ETag"], "PartNumber": 1}]}
        done = api(port, "PUT", f"checkpoints/{created['checkpoint']['id']}", token,
                   {"status": "Active", "multi_parts_tags": tags})  # fmt: skip
        assert done["statusCode"] == 200, done
        [listed] = api(port, "GET", "checkpoints", token)["data"]["checkpoints"]
        assert listed["status"] == "Active"
        stored = Path(embedded_env["ESD_DATA_DIR"]) / "storage" / listed["s3Location"].split("/", 3)[-1] / model.name
        assert stored.stat().st_size == model.stat().st_size
        assert growth < 128 * 1024**2, f"the web process grew by {growth / 1024**2:.0f} MiB"
    finally:
        stop_serve(server)


def _demo_server(embedded_env, tmp_path, grace: str) -> tuple[dict[str, str], str]:
    env = {**embedded_env, "ESD_SHUTDOWN_GRACE": grace}
    token = re.search(r"API token:\s+(\S+)", run("esd_bootstrap", "--first-run", env=env).stdout).group(1)
    model = tmp_path / "tiny-sd1.safetensors"
    for command in (("make_tiny_checkpoint", str(model)), ("esd_demo", str(model))):
        assert run(*command, env=env).returncode == 0
    return env, token


def _start_long_job(port: int, token: str) -> str:
    body = {"task_type": "txt2img", "inference_type": "Async", "models": {"Stable-diffusion": ["tiny-sd1.safetensors"]},
            "filters": {}}  # fmt: skip
    inference = api(port, "POST", "inferences", token, body)["data"]["inference"]
    # Long (150 steps, about 50 s on 2 cores) but of short steps (about 0.3 s): a job stops at its next step, so the
    # exit deadline below measures the drain, not how long one step takes on a busy machine (a 512x512 batch of 4
    # took 4 s a step there, and the deadline failed when the machine was loaded).
    payload = {"prompt": "a cat", "steps": 150, "width": 384, "height": 384, "batch_size": 1, "seed": 1}
    url = inference["api_params_s3_upload_url"]
    put = urllib.request.Request(url, data=json.dumps(payload).encode(), method="PUT")  # noqa: S310 (loopback)
    urllib.request.urlopen(put, timeout=10).close()  # noqa: S310
    assert api(port, "PUT", f"inferences/{inference['id']}/start", token)["statusCode"] == 202
    return inference["id"]


def _job_row(env: dict[str, str], job_id: str) -> list[str]:
    shown = run("shell", "-c", f"from inferences.models import InferenceJob as J; j = J.objects.get(pk='{job_id}'); "
                "print(j.status, j.worker_id, j.attempts, repr(j.error))", env=env)  # fmt: skip
    return shown.stdout.strip().splitlines()[-1].split(" ", 3)


def test_a_stopped_server_drains_then_puts_the_running_job_back(embedded_env, tmp_path):
    """Issue 29.4: Ctrl-C during a long job never exited, the web part went silent at once, and the job ran again
    from scratch after a kill -9. Now: the web part answers while the job has ESD_SHUTDOWN_GRACE to finish; past it
    the job stops at its next step and goes back to the queue (not failed, no attempt counted); a second Ctrl-C
    stops at once; the process exits within grace + 5 s."""
    env, token = _demo_server(embedded_env, tmp_path, grace="2")
    port = free_port()
    server = start_serve(port, env)
    try:
        job_id = _start_long_job(port, token)
        wait_for(lambda: api(port, "GET", f"inferences/{job_id}", token)["data"]["progress"] > 0, timeout=60)
        asked = time.monotonic()
        server.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert api(port, "GET", f"inferences/{job_id}", token)["data"]["status"] == "inprogress"  # still answering
        assert server.wait(timeout=30) == 0
        assert time.monotonic() - asked < 2 + 5
        said = server.stdout.read().decode()
        assert "Stopping: waiting up to 2 s for 1 running job(s) to finish" in said, said
        assert "Stopping 1 job(s) at their next step; they go back to the queue" in said, said
        assert _job_row(env, job_id) == ["inprogress", "None", "0", "''"]  # queued again, not failed

        env["ESD_SHUTDOWN_GRACE"] = "30"
        server = start_serve(port, env)  # the next start runs it again; a second Ctrl-C stops it at once
        wait_for(lambda: api(port, "GET", f"inferences/{job_id}", token)["data"]["progress"] > 0, timeout=60)
        asked = time.monotonic()
        server.send_signal(signal.SIGINT)
        time.sleep(0.3)
        server.send_signal(signal.SIGINT)  # with a grace of 30 s: only the second Ctrl-C ends it this soon
        assert server.wait(timeout=30) == 0
        assert time.monotonic() - asked < 2 + 5
        assert _job_row(env, job_id) == ["inprogress", "None", "0", "''"]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_busy_port_is_one_line_saying_what_to_do(embedded_env):
    # Issue 29.9: a second `make run` printed a traceback
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("esd_serve", "--port", str(port), "--no-workers", env=embedded_env)
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"make run PORT={port + 1}" in result.stderr and "Traceback" not in result.stderr
