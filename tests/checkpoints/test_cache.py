"""The worker-side model cache: once per sha256, verified, LRU within a budget, safe under concurrent askers."""

import hashlib
import io
import os
import threading
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from checkpoints import cache
from checkpoints.models import Checkpoint, CheckpointFile
from tests.helpers import safetensors_bytes


@pytest.fixture
def cache_dir(settings, tmp_path):
    settings.ESD_MODEL_CACHE_DIR = tmp_path / "model-cache"
    settings.ESD_MODEL_CACHE_BYTES = 10_000
    return settings.ESD_MODEL_CACHE_DIR


@pytest.fixture
def imported(admin_user, store, tmp_path):
    """Import files through the import_checkpoint command; returns their CheckpointFile rows."""

    def make(name, data):
        path = tmp_path / name
        path.write_bytes(data)
        out = io.StringIO()
        call_command("import_checkpoint", str(path), "--type", "Stable-diffusion", stdout=out)
        assert out.getvalue().endswith("Active\n")
        return CheckpointFile.objects.select_related("checkpoint").get(name=name)

    return make


def test_fetched_once_and_verified(cache_dir, imported, store, monkeypatch):
    data = safetensors_bytes({"w": b"\x01" * 1000})
    file = imported("one.safetensors", data)
    opened = []
    original = type(store).open
    monkeypatch.setattr(type(store), "open", lambda self, key: opened.append(key) or original(self, key))
    path = cache.cached_path(file)
    assert path.read_bytes() == data
    assert path.name == f"{hashlib.sha256(data).hexdigest()}.safetensors"
    assert cache.cached_path(file) == path
    assert len(opened) == 1


def test_a_damaged_object_is_not_cached(cache_dir, imported, store):
    file = imported("two.safetensors", safetensors_bytes())
    store.write_stream(file.key, iter([b"tampered"]))
    with pytest.raises(cache.CacheError, match="does not match"):
        cache.cached_path(file)
    assert not list(Path(cache_dir).glob("??/*"))


def test_least_recently_used_files_are_evicted(cache_dir, imported):
    files = [imported(f"m{index}.safetensors", safetensors_bytes({"w": bytes([index]) * 3000})) for index in range(3)]
    paths = [cache.cached_path(file) for file in files]  # about 9 KB of a 10 KB budget
    old = time.time() - 100
    os.utime(paths[1], (old, old))  # m1 is the least recently used
    os.utime(paths[0], (old + 50, old + 50))
    fourth = imported("m3.safetensors", safetensors_bytes({"w": b"\x09" * 3000}))
    cache.cached_path(fourth)
    assert not paths[1].exists()
    assert paths[0].exists() and paths[2].exists()


def test_a_file_larger_than_the_budget_is_refused(cache_dir, imported, settings):
    file = imported("huge.safetensors", safetensors_bytes({"w": b"\x00" * 20_000}))
    with pytest.raises(cache.CacheError, match="larger than the model cache"):
        cache.cached_path(file)


def test_concurrent_askers_fetch_once(cache_dir, imported, store, monkeypatch):
    file = imported("shared.safetensors", safetensors_bytes({"w": b"\x05" * 2000}))
    opened = []
    original = type(store).open

    def slow_open(self, key):
        opened.append(key)
        time.sleep(0.2)
        return original(self, key)

    monkeypatch.setattr(type(store), "open", slow_open)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.cached_path(file))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 4
    assert len(opened) == 1


def test_import_command_refuses_bad_files(admin_user, store, tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"\x80\x04")
    with pytest.raises(CommandError, match="pickle format"):
        call_command("import_checkpoint", str(path), "--type", "Stable-diffusion")
    assert not Checkpoint.objects.exists()
