"""`python manage.py make_tiny_checkpoint OUT.safetensors [--arch sd1|sdxl] [--seed N] [--half]`: a tiny
random-weight SD 1.x (default) or SDXL model.

The file has the single-file layout a user uploads (the real block structure at toy width, ~12 MB for SD 1.x and
~28 MB for SDXL with both text encoders under `conditioner.embedders.*`), so it
goes through upload, the worker's cache and the engine exactly like a real checkpoint. Its images are noise-like:
it is for trying the service and for tests, not for pictures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Write a tiny random-weight SD 1.x or SDXL checkpoint (single-file .safetensors) for demos and tests."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", help="Where to write the file (.safetensors).")
        parser.add_argument(
            "--arch", choices=("sd1", "sdxl"), default="sd1", help="The architecture (default sd1: SD 1.x)."
        )
        parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights (default 0).")
        parser.add_argument("--half", action="store_true", help="Store fp16 weights (half the size).")
        parser.add_argument("--force", action="store_true", help="Overwrite an existing file.")

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"])
        if out.suffix != ".safetensors":
            raise CommandError("the file name must end in .safetensors")
        if out.exists() and not options["force"]:
            raise CommandError(f"{out} exists; pass --force to overwrite it")
        from inferences.engine.devtools.tiny import write_tiny_checkpoint

        write_tiny_checkpoint(out, seed=options["seed"], half=options["half"], arch=options["arch"])
        self.stdout.write(f"Wrote {out} ({out.stat().st_size / 1024 / 1024:.1f} MiB)")
