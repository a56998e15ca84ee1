"""`python manage.py txt2img --checkpoint FILE --prompt TEXT --out DIR`: run the engine directly, no server.

Handy for trying a checkpoint on a GPU box, and the quickest way to see what the engine does with a payload
(`--payload api_param.json` takes any A1111 txt2img/img2img body; the flags override its keys).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from endpoints.management.commands.serve_endpoint import check_device
from inferences.engine.request.options import NoProgress


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class Bar(NoProgress):
    """A one-line progress bar on the command's stderr."""

    def __init__(self, stream: OutputWrapper) -> None:
        self.stream = stream

    def step(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} steps", ending="")
        self.stream.flush()

    def cancelled(self) -> bool:
        return False


class Command(BaseCommand):
    help = "Generate images from a checkpoint file with the engine (no server, no queue)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--checkpoint", required=True, help="A .safetensors single-file checkpoint.")
        parser.add_argument("--out", required=True, help="Folder for the PNGs and result.json.")
        parser.add_argument("--payload", help="An A1111 api_param.json to start from.")
        parser.add_argument("--prompt")
        parser.add_argument("--negative-prompt")
        parser.add_argument("--steps", type=int)
        parser.add_argument("--sampler", help="A1111 sampler name, e.g. 'Euler a' or 'DPM++ 2M Karras'.")
        parser.add_argument("--width", type=int)
        parser.add_argument("--height", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--cfg-scale", type=float)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--n-iter", type=int)
        parser.add_argument("--vae", help="A VAE .safetensors file.")
        parser.add_argument(
            "--lora", action="append", default=[], help="A LoRA file (use <lora:stem:w> in the prompt)."
        )
        parser.add_argument("--embedding", action="append", default=[], help="A textual-inversion file.")
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")

    def handle(self, *args: Any, **options: Any) -> None:
        from inferences.engine.errors import EngineError
        from inferences.engine.request.options import JobFiles, ModelFile
        from inferences.engine.runner import Engine
        from inferences.engine_options import engine_options

        payload: dict[str, Any] = {}
        if options["payload"]:
            payload = json.loads(Path(options["payload"]).read_text())
        for flag, key in (
            ("prompt", "prompt"),
            ("negative_prompt", "negative_prompt"),
            ("steps", "steps"),
            ("sampler", "sampler_name"),
            ("width", "width"),
            ("height", "height"),
            ("seed", "seed"),
            ("cfg_scale", "cfg_scale"),
            ("batch_size", "batch_size"),
            ("n_iter", "n_iter"),
        ):
            if options[flag] is not None:
                payload[key] = options[flag]
        task = "img2img" if payload.get("init_images") else "txt2img"

        def model(path: str) -> ModelFile:
            file = Path(path)
            if not file.is_file():
                raise CommandError(f"{file} does not exist")
            return ModelFile(path=file, name=file.name, sha256=sha256_file(file))

        files = JobFiles(
            checkpoint=model(options["checkpoint"]),
            vaes=tuple(model(path) for path in ([options["vae"]] if options["vae"] else [])),
            loras=tuple(model(path) for path in options["lora"]),
            embeddings=tuple(model(path) for path in options["embedding"]),
        )
        engine = Engine(engine_options(check_device(options["device"])))
        started = time.perf_counter()
        try:
            result = engine.run(task, payload, files, Bar(self.stderr))
        except EngineError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write("")
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        for index, png in enumerate(result.images):
            (out / f"image_{index}.png").write_bytes(png)
        (out / "result.json").write_text(json.dumps(result.document(), indent=2) + "\n")
        for key in result.ignored:
            self.stderr.write(f"not supported, ignored: {key}")
        self.stdout.write(
            f"{len(result.images)} image(s) in {out} "
            f"(model {result.timings['model_seconds']:.2f} s, run {result.timings['inference_seconds']:.2f} s, "
            f"total {time.perf_counter() - started:.2f} s)"
        )
