"""How A1111 names model files in payloads (titles with folders and hashes, names with or without extension), and
which of a job's files a request picks by them: torch-free, for the worker and the API server's estimates alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import EngineError
from .tokens import occurs, token_ids

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
    raise EngineError(
        f"{key} names {name!r}, but the job's {kind} models are: {known}; create the job with that model among them"
    )


def pick_checkpoint(request: Generation, files: JobFiles) -> ModelFile | None:
    """The job's first Stable-diffusion model, or the one `override_settings.sd_model_checkpoint` names."""
    if request.checkpoint_name is None:
        return files.checkpoint
    candidates = files.checkpoints or ((files.checkpoint,) if files.checkpoint else ())
    return find_model(candidates, request.checkpoint_name, key=request.checkpoint_key, kind="Stable-diffusion")


def pick_hires_checkpoint(request: Generation, files: JobFiles, first: ModelFile) -> ModelFile | None:
    """The hires fix's `hr_checkpoint_name` among the job's Stable-diffusion models; None: the first pass's."""
    name = request.hires.checkpoint_name if request.hires is not None else None
    if name is None or names_model(name, first.name):
        return None
    return find_model(files.checkpoints, name, key="hr_checkpoint_name", kind="Stable-diffusion")


def pick_vae(request: Generation, files: JobFiles) -> ModelFile | None:
    """`override_settings.sd_vae` names one of the job's VAE files; otherwise the job's first VAE, if any."""
    if request.vae is None:
        return files.vaes[0] if files.vaes else None
    if request.vae == "None":
        return None
    for vae in files.vaes:
        if request.vae in (vae.name, vae.stem):
            return vae
    raise EngineError(f"override_settings.sd_vae names {request.vae!r}, but the job has no VAE model of that name")


def mentioned_embeddings(request: Generation, files: JobFiles) -> list[ModelFile]:
    """The job's embeddings its prompts name, as A1111 finds them: the ids of the file's stem among the prompts'
    token ids (tokens.py). The prompts are tokenized as written, brackets and all: a superset of A1111's per-segment
    search, so a job holds every embedding its conditioning may use."""
    texts = [request.text, request.negative_text]
    if request.hires is not None:
        texts += [text for text in (request.hires.text, request.hires.negative_text) if text]
    prompt_ids = [token_ids(text) for text in texts]
    return [
        embedding for embedding in files.embeddings if any(occurs(ids, token_ids(embedding.stem)) for ids in prompt_ids)
    ]
