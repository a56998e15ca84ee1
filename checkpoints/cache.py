"""The worker-side model-file cache: a checkpoint file fetched once per sha256 into ESD_MODEL_CACHE_DIR, kept
within ESD_MODEL_CACHE_BYTES by evicting the least recently used files.

Safe when several worker processes ask at once: each sha256 has a lock file (flock); the first process
downloads to a temporary name and renames it into place, the others wait and then find it.
"""

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from esd.storage import CHUNK, get_storage, incoming_file

from .models import CheckpointFile


class CacheError(Exception):
    """The file could not be put in the cache (missing in storage, damaged, larger than the budget)."""


@contextmanager
def _locked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _entries(root: Path) -> list[Path]:
    return [path for path in root.glob("??/*") if path.is_file() and not path.name.startswith(".")]


def _evict(root: Path, needed: int, budget: int, keep: Path) -> None:
    """Remove least recently used files until `needed` more bytes fit; files being fetched (locked) stay."""
    entries = sorted(_entries(root), key=lambda path: path.stat().st_mtime)
    used = sum(path.stat().st_size for path in entries)
    for path in entries:
        if used + needed <= budget:
            return
        if path == keep:
            continue
        with _locked(root / "locks" / f"{path.stem}.lock", blocking=False) as free:
            if free:
                size = path.stat().st_size
                path.unlink(missing_ok=True)
                used -= size


def cached_path(file: CheckpointFile) -> Path:
    """A local path of the file's bytes, fetching it from storage the first time (verified by sha256)."""
    if not file.sha256:
        raise CacheError(f"{file.name} has not been checked yet (no sha256)")
    root = Path(settings.ESD_MODEL_CACHE_DIR)
    # Renames may drop the extension (as ESD's do); the checked format names the cached file.
    suffix = {"safetensors": ".safetensors", "yaml": ".yaml"}.get(file.format, Path(file.name).suffix)
    target = root / file.sha256[:2] / f"{file.sha256}{suffix}"
    with _locked(root / "locks" / f"{target.stem}.lock"):
        if target.exists():
            os.utime(target)  # most recently used
            return target
        budget = settings.ESD_MODEL_CACHE_BYTES
        size = file.size or 0
        if size > budget:
            raise CacheError(f"{file.name} ({size} bytes) is larger than the model cache ({budget} bytes)")
        _evict(root, size, budget, keep=target)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with incoming_file(target.parent) as out, get_storage().open(file.key) as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != file.sha256:
            Path(out.name).unlink(missing_ok=True)
            raise CacheError(f"{file.name} in storage does not match its recorded sha256")
        Path(out.name).replace(target)
        return target
