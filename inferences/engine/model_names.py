"""How A1111 names model files in payloads: titles with folders and hashes, names with or without extension."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import EngineError

if TYPE_CHECKING:
    from .options import JobFiles, ModelFile
    from .payload import Generation


def model_title_name(title: str) -> str:
    """A1111's checkpoint title ("sub/v1-5-pruned.safetensors [6ce0161689]") -> the file name it names."""
    return title.split(" [", 1)[0].replace("\\", "/").rsplit("/", 1)[-1].strip()


def names_model(name: str, file_name: str) -> bool:
    """Whether an A1111 model name (with or without its extension) names this file."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name else file_name
    return name in (file_name, stem)


def find_model(files: Sequence[ModelFile], name: str, *, key: str, kind: str) -> ModelFile:
    """The job's model of type `kind` that `name` names (with or without extension), for the payload's `key`; one
    the job lacks fails naming the job's models of that type."""
    for candidate in files:
        if names_model(name, candidate.name):
            return candidate
    known = ", ".join(candidate.stem for candidate in files) or "none"
    raise EngineError(f"{key} names {name!r}, but the job has no {kind} model of that name (it has: {known})")


def pick_checkpoint(request: Generation, files: JobFiles) -> ModelFile | None:
    """The job's first Stable-diffusion model, or the one `override_settings.sd_model_checkpoint` names."""
    if request.checkpoint_name is None:
        return files.checkpoint
    candidates = files.checkpoints or ((files.checkpoint,) if files.checkpoint else ())
    return find_model(candidates, request.checkpoint_name, key=request.checkpoint_key, kind="Stable-diffusion")
