"""A throw-away multi-process deployment for the fault and load scripts: its own PostgreSQL database (dropped
afterwards), its own Redis database number, a fresh data folder, an administrator, the tiny model and the
`esd-async-local` endpoint. Worker and web processes started with `env` share all of it."""

import os
import subprocess
import sys
import tempfile
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

        with psycopg.connect(self.base_db, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def scratch_deployment(name: str, redis_db: int, **settings: str) -> Scratch:
    import psycopg
    import redis

    base_db, base_broker = os.environ.get("DATABASE_URL", ""), os.environ.get("ESD_BROKER_URL", "")
    if not base_db.startswith("postgres") or not base_broker.startswith("redis"):
        sys.exit("set DATABASE_URL (PostgreSQL) and ESD_BROKER_URL (Redis): the processes must share them")
    with psycopg.connect(base_db, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    data = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    (data / "static").mkdir()
    broker = f"{base_broker.rsplit('/', 1)[0]}/{redis_db}"
    redis.Redis.from_url(broker).flushdb()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("ESD_", "DATABASE", "DJANGO_"))},
        "DATABASE_URL": urlunsplit(urlsplit(base_db)._replace(path=f"/{name}")),
        "ESD_BROKER_URL": broker,
        "ESD_DATA_DIR": str(data),
        "DJANGO_SETTINGS_MODULE": "esd.settings",
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
