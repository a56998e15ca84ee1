"""A throw-away multi-process deployment for the fault and load scripts: its own PostgreSQL database (dropped
afterwards), its own Redis database number, a fresh data folder, an administrator, the tiny model and the
`esd-async-local` endpoint. Worker and web processes started with `env` share all of it. `embedded_deployment`
is the same on `make run`'s defaults (SQLite, the in-process broker); `Client` speaks to the API over HTTP."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
MANAGE = [sys.executable, str(ROOT / "manage.py")]


@dataclass
class Scratch:
    name: str
    base_db: str
    env: dict[str, str]
    data: Path
    model: Path

    def drop(self) -> None:
        import psycopg

        if not self.base_db:  # embedded: the SQLite file goes with the data folder
            return
        with psycopg.connect(self.base_db, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def scratch_deployment(name: str, redis_db: int, broker: str = "", **settings: str) -> Scratch:
    """On the PostgreSQL server of DATABASE_URL and the Redis of ESD_BROKER_URL (or `broker`, a Redis URL)."""
    import psycopg
    import redis

    base_db, base_broker = os.environ.get("DATABASE_URL", ""), os.environ.get("ESD_BROKER_URL", "")
    if not base_db.startswith("postgres") or not (broker or base_broker).startswith("redis"):
        sys.exit("set DATABASE_URL (PostgreSQL) and ESD_BROKER_URL (Redis): the processes must share them")
    with psycopg.connect(base_db, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    broker = broker or f"{base_broker.rsplit('/', 1)[0]}/{redis_db}"
    redis.Redis.from_url(broker).flushdb()
    database = urlunsplit(urlsplit(base_db)._replace(path=f"/{name}"))
    return _set_up(name, base_db, {"DATABASE_URL": database, "ESD_BROKER_URL": broker, **settings})


def embedded_deployment(name: str, **settings: str) -> Scratch:
    """`make run`'s set-up: SQLite in the data folder, the in-process broker, the local store."""
    return _set_up(name, "", settings)


def _set_up(name: str, base_db: str, settings: dict[str, str]) -> Scratch:
    data = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    (data / "static").mkdir()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("ESD_", "DATABASE", "DJANGO_"))},
        "ESD_DATA_DIR": str(data),
        "DJANGO_SETTINGS_MODULE": "esd.settings",
        "DJANGO_SECRET_KEY": f"bench-only-{name}-key",
        **settings,
    }
    quiet = {"env": env, "check": True, "capture_output": True}
    model = data / "tiny-sd1.safetensors"
    for command in (
        ["migrate", "--noinput"],
        ["esd_bootstrap", "--username", "admin", "--password", f"{name}-pw-1"],
        ["make_tiny_checkpoint", str(model)],
        ["esd_demo", str(model)],
    ):
        subprocess.run([*MANAGE, *command], **quiet)
    return Scratch(name=name, base_db=base_db, env=env, data=data, model=model)


TOKEN = """
from accounts import services
from accounts.models import User
print(services.api_token_create(user=User.objects.get(username="admin"), name="bench")[1])
"""


def admin_token(env: dict[str, str]) -> str:
    done = subprocess.run([*MANAGE, "shell", "-c", TOKEN], env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Client:
    """The ESD API over HTTP with a bearer token; presigned URLs (absolute) are called without it."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def call(self, method: str, path: str, body: object = None, raw: bytes | None = None) -> tuple[int, dict]:
        url = path if path.startswith("http") else self.base + path
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {} if path.startswith("http") else {"Authorization": f"Bearer {self.token}"}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 (loopback)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                text = response.read()
                kind = response.headers.get("Content-Type", "")
                return response.status, json.loads(text) if text and "json" in kind else {}
        except urllib.error.HTTPError as exc:
            return exc.code, {}

    def submit(self, model: str, payload: dict) -> tuple[int, str]:
        """Create an Async txt2img job, upload its payload, start it: (status of the last call, job id)."""
        status, body = self.call("POST", "inferences", {
            "task_type": "txt2img", "inference_type": "Async",
            "models": {"Stable-diffusion": [model]}, "filters": {},
        })  # fmt: skip
        if status != 201:
            return status, ""
        inference = body["data"]["inference"]
        status, _ = self.call("PUT", inference["api_params_s3_upload_url"], raw=json.dumps(payload).encode())
        if status != 200:
            return status, inference["id"]
        status, _ = self.call("PUT", f"inferences/{inference['id']}/start")
        return status, inference["id"]

    def in_service(self, timeout: float = 90.0) -> bool:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, body = self.call("GET", "endpoints")
                if status == 200 and body["data"]["endpoints"][0]["endpoint_status"] == "InService":
                    return True
            except OSError:
                pass
            time.sleep(0.3)
        return False


def in_scratch_test_database(run: Callable[[], None]) -> None:
    """Run `run` in this process with Django set up on a scratch PostgreSQL database (Django's test-database
    machinery on DATABASE_URL's server, dropped afterwards), the test client's host allowed: for the list
    benchmarks, which fill it and time requests through Django's full request path."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "esd.settings_test")
    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    if connection.vendor != "postgresql":
        sys.exit("set DATABASE_URL to a PostgreSQL server")
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        run()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
