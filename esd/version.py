"""This server's version, read from pyproject.toml (its one record): /metrics reports it as `esd_server_info`, API
responses as `x-esd-server-version`, and CHANGELOG.md says what each version changed."""

import tomllib
from pathlib import Path

VERSION: str = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"][
    "version"
]
