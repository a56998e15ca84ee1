"""Browser tests: Playwright driving Debian's chromium headless against a live server with real workers.

Playwright's own browser download cannot work here, so `make test` installs Debian's `chromium` where it is
missing and the tests launch it by path. Screenshots of each page go to tests/e2e/artifacts/ (not committed).
"""

import os
import shutil
from pathlib import Path

import pytest

from endpoints.runtime import EndpointWorker

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network and a root user (the machine's own notes: without them chromium keeps trying Google).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test thread are still
    # synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium package"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    yield opened
    context.close()


def shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def site(transactional_db, live_server, settings, admin_user, tmp_path):
    settings.ESD_PUBLIC_URL = live_server.url  # the local store's signed image URLs point at the live server
    settings.ESD_WORKER_HEARTBEAT_SECONDS = 0.2
    from inferences.engine.devtools.tiny import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(tmp_path / "tiny-sd1.safetensors")
    workers: list[EndpointWorker] = []
    yield live_server.url, checkpoint, workers
    for worker in workers:
        worker.stop()
