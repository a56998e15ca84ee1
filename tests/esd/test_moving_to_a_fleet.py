"""From the laptop to a fleet, as docs/deployment.md says it (issue 29.10): `make run`'s data (SQLite and the local
store) moved to PostgreSQL and S3 with `dumpdata`/`loaddata` and `esd_copy_store`, and a finished job's outputs,
its owner's password and grants read back on the new deployment. The same steps restore a backup."""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from esd.secret_key import write_secret_key
from tests.conftest import use_s3

ROOT = Path(__file__).resolve().parents[2]
SCRATCH_DB = "esd_moving_test"

SUBMIT_AND_RUN = """
from django.utils import timezone
from accounts.models import User
from endpoints.models import Endpoint, Worker
from endpoints.services import endpoint_refresh
from inferences import services
from inferences.execution import inference_execute
endpoint = Endpoint.objects.get()
Worker.objects.create(endpoint=endpoint, hostname="laptop", pid=1, device="cpu", last_heartbeat=timezone.now())
endpoint_refresh(endpoint)
job = services.inference_submit(actor=User.objects.get(username="admin"), task_type="txt2img",
    models={"Stable-diffusion": ["tiny-sd1.safetensors"]},
    payload={"prompt": "a cat", "steps": 2, "width": 64, "height": 64})
inference_execute(job_id=str(job.pk), worker=None, device="cpu")
print("JOB", job.pk)
"""

READ_BACK = """
from django.contrib.auth import authenticate
from accounts.models import User
from esd.storage import get_storage
from inferences import selectors
from inferences.models import InferenceJob
job = InferenceJob.objects.get(pk="{job_id}")
admin = User.objects.get(username="admin")
storage = get_storage()
with storage.open(job.result_folder + job.image_names[0]) as handle:
    png = handle.read()
print(json.dumps({{
    "status": job.status, "sees": selectors.visible_jobs(admin, InferenceJob.objects.all()).count(),
    "png": png[:8].hex(), "size": len(png), "result": selectors.job_result_document(job) is not None,
    "login": authenticate(username="admin", password="{password}") is not None, "store": storage.uri(""),
}}))
"""


def manage(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def scratch_database():
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        pytest.fail("this test moves data to PostgreSQL: set DATABASE_URL to a PostgreSQL server (as .ci/run does)")
    server = urlunsplit(urlsplit(base)._replace(path="/postgres"))  # the maintenance database: always there
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {SCRATCH_DB}")
    yield urlunsplit(urlsplit(base)._replace(path=f"/{SCRATCH_DB}"))
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")


def test_make_runs_data_moves_to_postgresql_and_s3(tmp_path, settings, moto_server, scratch_database):
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH")
    laptop = {key: os.environ[key] for key in keep if key in os.environ} | {
        "ESD_DATA_DIR": str(tmp_path / "laptop"), "DJANGO_SETTINGS_MODULE": "esd.settings",
    }  # fmt: skip
    write_secret_key(tmp_path / "laptop")  # as make run
    manage("migrate", "-v0", env=laptop)
    first_run = manage("esd_bootstrap", "--first-run", env=laptop)
    password = first_run.split("admin login:")[1].split()[2]
    model = tmp_path / "tiny-sd1.safetensors"
    manage("make_tiny_checkpoint", str(model), env=laptop)
    manage("esd_demo", str(model), env=laptop)
    job_id = manage("shell", "-c", SUBMIT_AND_RUN, env=laptop).split("JOB ")[1].split()[0]
    dump = tmp_path / "esd.json"
    # the documented dump: the data, with permissions and content types by name (their ids differ between databases)
    manage(
        "dumpdata", "--natural-foreign", "-e", "contenttypes", "-e", "auth.permission", "-e", "admin.logentry",
        "-e", "sessions", "-e", "django_dramatiq", "-o", str(dump), env=laptop,
    )  # fmt: skip

    use_s3(settings, moto_server)  # the bucket, empty
    fleet = laptop | {
        "ESD_DATA_DIR": str(tmp_path / "fleet"), "DATABASE_URL": scratch_database, "ESD_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": settings.AWS_STORAGE_BUCKET_NAME, "AWS_S3_ENDPOINT_URL": moto_server,
        "AWS_S3_REGION_NAME": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "DJANGO_SECRET_KEY": "moved-" * 8,
    }  # fmt: skip
    manage("migrate", "-v0", env=fleet)
    manage("loaddata", str(dump), env=fleet)
    copied = manage("esd_copy_store", str(tmp_path / "laptop" / "storage"), env=fleet)
    assert "Copied " in copied and " 0 were there already" in copied
    shown = manage("shell", "-c", "import json\n" + READ_BACK.format(job_id=job_id, password=password), env=fleet)
    read = json.loads(shown.strip().splitlines()[-1])
    assert read == {
        "status": "succeed", "sees": 1, "png": "89504e470d0a1a0a", "size": read["size"], "result": True,
        "login": True, "store": "s3://esd-test/",
    }  # fmt: skip
    original = tmp_path / "laptop" / "storage" / "out" / job_id / "result" / "image_0.png"
    assert read["size"] == original.stat().st_size
