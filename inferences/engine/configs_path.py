"""Where the shipped config folders live (JSON and tokenizer files, no weights; see configs/build.py)."""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"


def config_folder(name: str) -> Path:
    return CONFIGS / name
