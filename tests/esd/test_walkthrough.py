"""The README's shell walkthrough and docs/walkthrough.md's Python one, run as written against a live esd_serve set
up the way `make run` sets one up (migrate, first-run administrator, demo model and endpoint)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.endpoints.test_processes import ROOT, clean_env, run, start_serve, stop_serve
from tests.helpers import FileServer, free_port, safetensors_bytes


def fenced_block(path: Path, language: str, after: str) -> str:
    """The first ```language block after the heading (or line) `after`."""
    text = path.read_text()
    start = text.index(after)
    found = re.search(rf"```{language}\n(.*?)```", text[start:], re.S)
    assert found is not None, f"no {language} block after {after!r} in {path.name}"
    return found.group(1)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A server with `make run`'s defaults, plus a file server for the by-URL import (downloads from loopback are
    refused unless allowed, and the suite has no internet)."""
    data = tmp_path_factory.mktemp("walkthrough")
    env = clean_env(ESD_DATA_DIR=str(data / "var"), ESD_DOWNLOAD_ALLOW_HOSTS="127.0.0.1")
    del env["DJANGO_SECRET_KEY"]  # as `make run`: the key it writes into the data folder
    subprocess.run(
        [sys.executable, "-m", "esd.secret_key", str(data / "var")], env=env, check=True, capture_output=True
    )
    demo = data / "var" / "demo" / "tiny-sd1.safetensors"
    for step in (["migrate", "-v0"], ["make_tiny_checkpoint", str(demo)]):
        done = run(*step, env=env)
        assert done.returncode == 0, done.stderr
    first_run = run("esd_bootstrap", "--first-run", env=env)
    token = re.search(r"API token:\s+(\S+)", first_run.stdout).group(1)
    demo_done = run("esd_demo", str(demo), env=env)
    assert demo_done.returncode == 0, demo_done.stderr
    files = FileServer()
    files.serve_bytes("/loras/from-shell.safetensors", safetensors_bytes())
    files.serve_bytes("/loras/from-python.safetensors", safetensors_bytes({"w": b"\x02" * 8}))
    port = free_port()
    server = start_serve(port, env)
    yield {"port": port, "token": token, "files": files, "demo": demo, "cwd": data}
    stop_serve(server)
    files.close()


def walkthrough_env(live, lora: str) -> dict[str, str]:
    return {
        **clean_env(),
        "BASE": f"http://127.0.0.1:{live['port']}/prod",
        "TOKEN": live["token"],
        "MODEL_FILE": str(live["demo"]),
        "MODEL_URL": live["files"].url(f"/loras/{lora}"),
    }


def run_walkthrough(live, argv: list[str], lora: str) -> str:
    """Run a walkthrough's code as a person would paste it; its output, after checking it got the LoRA and a job."""
    done = subprocess.run(
        argv, cwd=live["cwd"], env=walkthrough_env(live, lora), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LoRA: Active" in done.stdout
    return done.stdout


def test_the_readme_shell_walkthrough_works_as_written(live):
    script = fenced_block(ROOT / "README.md", "sh", "## Your first image, from a shell")
    said = run_walkthrough(live, ["/bin/bash", "-euo", "pipefail", "-c", script], "from-shell.safetensors")
    assert re.search(r"job [0-9a-f-]{36}: succeed", said), said
    with Image.open(live["cwd"] / "first-image.png") as image:
        assert (image.format, image.size) == ("PNG", (64, 64))
        assert "Seed: 42" in image.info["parameters"]


def test_the_python_walkthrough_works_as_written(live):
    script = fenced_block(ROOT / "docs" / "walkthrough.md", "python", "# Your first image, from Python")
    said = run_walkthrough(live, [sys.executable, "-c", script], "from-python.safetensors")
    assert re.search(r"job [0-9a-f-]{36} succeed", said), said
    with Image.open(live["cwd"] / "first-image-py-0.png") as image:
        assert (image.format, image.size) == ("PNG", (64, 64))
