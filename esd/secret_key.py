"""Set-up step: write a random Django secret key into the data folder, once (`python -m esd.secret_key [folder]`).

`make run` runs it before anything reads the settings, which only read the key (DJANGO_SECRET_KEY, or this file)
and never write: a deployment with several web replicas sets DJANGO_SECRET_KEY, the same on each.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

FILE_NAME = "secret_key"


def key_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def read_secret_key(data_dir: Path) -> str:
    """The key kept in `data_dir`, or "" where none has been written."""
    path = key_path(data_dir)
    return path.read_text().strip() if path.is_file() else ""


def write_secret_key(data_dir: Path) -> Path:
    """Create the key file (mode 600) unless it exists; an existing key is never replaced (sessions and signed
    URLs made with it stay valid)."""
    path = key_path(data_dir)
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ESD_DATA_DIR", "var"))
    sys.stdout.write(f"==> Secret key in {write_secret_key(folder)}\n")
