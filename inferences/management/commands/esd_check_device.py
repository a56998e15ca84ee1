"""`python manage.py esd_check_device [--device cuda] [--checkpoint FILE]`: what a worker on this machine will
compute on (device, dtype, torch build, memory budget) and the time of one image, before it serves an endpoint.

Without --checkpoint it times the tiny random-weight model (written to a temporary folder): the machine's overhead,
not a real model's speed. Installing GPU workers: docs/deployment.md.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from endpoints.management.commands.serve_endpoint import check_device


class Command(BaseCommand):
    help = "Print the device, dtype and memory budget a worker here would use, and time one image."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu).")
        parser.add_argument("--checkpoint", help="A .safetensors checkpoint to time (default: the tiny model).")
        parser.add_argument("--size", type=int, default=512, help="Width and height of the image (default 512).")
        parser.add_argument("--steps", type=int, default=20)

    def handle(self, *args: Any, **options: Any) -> None:
        from inferences.engine.devtools.tiny import write_tiny_checkpoint
        from inferences.engine.errors import EngineError
        from inferences.engine.models.device import describe
        from inferences.engine.request.options import JobFiles, ModelFile
        from inferences.engine.runner import Engine
        from inferences.engine_options import engine_options

        engine_settings = engine_options(check_device(options["device"]))
        try:
            for key, value in describe(engine_settings).items():
                self.stdout.write(f"{key + ':':15} {value}")
            with tempfile.TemporaryDirectory() as folder:
                path = Path(options["checkpoint"] or write_tiny_checkpoint(Path(folder) / "tiny-sd1.safetensors"))
                if not path.is_file():
                    raise CommandError(f"{path} is not a file")
                engine = Engine(engine_settings)
                files = JobFiles(checkpoint=ModelFile(path, path.name))
                payload = {"prompt": "a lighthouse at dusk", "steps": options["steps"], "seed": 1,
                           "width": options["size"], "height": options["size"]}  # fmt: skip
                started = time.perf_counter()
                first = engine.run("txt2img", payload, files)
                loaded = time.perf_counter() - started
                started = time.perf_counter()
                engine.run("txt2img", payload, files)
                warm = time.perf_counter() - started
        except EngineError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{'model:':15} {path.name} (loaded in {first.timings['model_seconds']:.2f} s)")
        self.stdout.write(
            f"{'one image:':15} {options['size']}x{options['size']}, {options['steps']} steps: {warm:.2f} s warm "
            f"({loaded:.2f} s with the load)"
        )
