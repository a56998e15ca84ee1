"""Settings come from the environment with production-safe defaults (checked in fresh interpreters)."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from esd.secret_key import write_secret_key

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'debug': s.DEBUG, 'hosts': s.ALLOWED_HOSTS, 'db': str(s.DATABASES['default']['NAME']), "
    "'prefix': s.ESD_API_PREFIX, 'mode': s.ESD_AUTH_MODE, 'key': s.SECRET_KEY, 'storage': s.STORAGES['default'], "
    "'broker': s.DRAMATIQ_BROKER['BROKER']}, default=str))"
)


def run_settings(tmp_path: Path, *, key_file: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    """The settings read in a fresh interpreter; `key_file`: with the secret key file `make run` writes first
    (unless the environment sets DJANGO_SECRET_KEY)."""
    if key_file and "DJANGO_SECRET_KEY" not in env:
        write_secret_key(tmp_path)
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "ESD_", "DATABASE"))}
    clean.update({"DJANGO_SETTINGS_MODULE": "esd.settings", "ESD_DATA_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60, check=False
    )


def probe(tmp_path: Path, **env: str) -> dict:
    result = run_settings(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_embedded_defaults_are_safe(tmp_path):
    values = probe(tmp_path)
    assert values["debug"] is False
    assert values["hosts"] == ["127.0.0.1", "localhost", "[::1]"]
    assert values["db"] == str(tmp_path / "db.sqlite3")
    assert values["prefix"] == "prod/"
    assert values["mode"] == "token"
    assert values["broker"] == "dramatiq.brokers.stub.StubBroker"
    assert str(tmp_path / "storage") in json.dumps(values["storage"])


def test_secret_key_is_random_persisted_and_private(tmp_path, tmp_path_factory):
    missing = run_settings(tmp_path, key_file=False)  # reading the settings writes nothing, and says what to do
    assert missing.returncode != 0 and "No secret key: set DJANGO_SECRET_KEY" in missing.stderr
    assert "python -m esd.secret_key" in missing.stderr and not (tmp_path / "secret_key").exists()
    first = probe(tmp_path)["key"]
    assert len(first) >= 50
    assert probe(tmp_path)["key"] == first  # kept across restarts, so sessions survive
    assert probe(tmp_path_factory.mktemp("other"))["key"] != first  # never a constant
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


def test_environment_overrides(tmp_path):
    values = probe(
        tmp_path,
        DJANGO_SECRET_KEY="k" * 60,
        DJANGO_ALLOWED_HOSTS="esd.example,10.0.0.1",
        ESD_API_PREFIX="/v1/",
        ESD_AUTH_MODE="esd-1.4",
        ESD_BROKER_URL="amqp://guest:guest@127.0.0.1:5672/",
        DATABASE_URL="postgres://u@db.example:5432/esd",
    )
    assert values["key"] == "k" * 60
    assert values["hosts"] == ["esd.example", "10.0.0.1"]
    assert values["prefix"] == "v1/"
    assert values["mode"] == "esd-1.4"
    assert values["broker"] == "dramatiq.brokers.rabbitmq.RabbitmqBroker"
    assert values["db"] == "esd"
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"ESD_AUTH_MODE": "none"}, "ESD_AUTH_MODE must be one of"),
        ({"ESD_BROKER_URL": "kafka://x"}, "ESD_BROKER_URL must start with"),
        ({"ESD_STORAGE": "ftp"}, "ESD_STORAGE must be"),
        ({"ESD_INSTANCE_QUOTAS": "ml.g5.2xlarge=eight"}, "ESD_INSTANCE_QUOTAS: each quota must be a whole number"),
        ({"ESD_TRUSTED_PROXIES": "10.0.0.300"}, "ESD_TRUSTED_PROXIES: "),
        ({"ESD_ENGINE_WARMUP": "512x512,1024"}, "ESD_ENGINE_WARMUP: '1024' is not a size"),
        ({"ESD_ENGINE_WARMUP": "500x512"}, "each side a multiple of 8 from 64 to 2048"),
        ({"ESD_ENGINE_DTYPE": "int4"}, "ESD_ENGINE_DTYPE must be auto, fp16, bf16, fp32 or fp8, not 'int4'"),
        ({"ESD_ENGINE_COMPILE": "fast"}, "must be off, default, reduce-overhead or max-autotune, not 'fast'"),
    ],
)
def test_bad_values_fail_at_start_with_a_clear_message(tmp_path, env, fragment):
    result = run_settings(tmp_path, **env)
    assert result.returncode != 0
    assert fragment in result.stderr


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "ESD_", "DATABASE"))}
    env.update(
        DJANGO_SETTINGS_MODULE="esd.settings",
        ESD_DATA_DIR=str(tmp_path),
        DJANGO_SECRET_KEY="x8#Kd2!vQ" * 8,
        DJANGO_HTTPS="true",
        DJANGO_ALLOWED_HOSTS="esd.example",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_about_esd_mode_without_a_key(settings):
    from django.core.checks import run_checks

    settings.ESD_AUTH_MODE = "esd-1.4"
    settings.ESD_API_KEY = ""
    assert "esd.W001" in [message.id for message in run_checks(include_deployment_checks=True)]
    settings.ESD_API_KEY = "a-long-random-deployment-key"
    assert "esd.W001" not in [message.id for message in run_checks(include_deployment_checks=True)]


def test_ci_really_uses_the_database_it_names():
    url = os.environ.get("DATABASE_URL", "")
    expected = "postgresql" if url.startswith(("postgres", "pgsql")) else "sqlite"
    assert connection.vendor == expected
