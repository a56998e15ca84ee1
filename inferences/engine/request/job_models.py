"""Which of a job's model files its request uses, each picked by name once: at `start`, into the job's plan.

A1111 names models in many places of a payload (override_settings, the prompt's `<lora:…>` tags and embedding
words, ControlNet units, the hires fix, the extras upscalers). They are all resolved here, against the files the
job was created with, so a name the job lacks is refused at start and the worker only loads what the plan lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import EngineError
from .model_names import find_model, mentioned_embeddings, pick_checkpoint, pick_hires_checkpoint, pick_vae
from .options import JobFiles, ModelFile
from .payload import PIXEL_UPSCALERS, Generation, Removal, Upscale


@dataclass(frozen=True)
class Lora:
    """One LoRA adapter of the prompt: its file and the weights of all its tags summed, as A1111 applies them."""

    file: ModelFile
    weight: float

    @property
    def adapter(self) -> str:
        return f"lora_{self.file.sha256[:16] or abs(hash(self.file.path))}"


@dataclass(frozen=True)
class Upscaler:
    """An upscaler model a payload key names ("hr_upscaler", "upscaler_1", "upscaler_2")."""

    key: str
    file: ModelFile


@dataclass(frozen=True)
class JobModels:
    checkpoint: ModelFile | None = None  # None only for background removal and extras
    vae: ModelFile | None = None  # None: the checkpoint's own
    hires_checkpoint: ModelFile | None = None  # None: the hires pass runs on the first pass's checkpoint
    loras: tuple[Lora, ...] = ()  # in prompt order
    embeddings: tuple[ModelFile, ...] = ()  # the ones the prompts mention
    controlnets: tuple[ModelFile, ...] = ()  # one per enabled ControlNet unit, in order
    upscalers: tuple[Upscaler, ...] = ()

    def upscaler(self, key: str) -> ModelFile:
        return next(upscaler.file for upscaler in self.upscalers if upscaler.key == key)

    def held(self) -> list[ModelFile]:
        """Every file held in memory beside the checkpoint, each once (the memory estimate adds their weights)."""
        found: dict[str, ModelFile] = {}
        candidates = [self.hires_checkpoint, self.vae, *(lora.file for lora in self.loras), *self.embeddings]
        candidates += [*self.controlnets, *(upscaler.file for upscaler in self.upscalers)]
        for file in candidates:
            if file is not None and (self.checkpoint is None or file.name != self.checkpoint.name):
                found.setdefault(file.name, file)
        return list(found.values())

    def files(self) -> list[ModelFile]:
        return ([self.checkpoint] if self.checkpoint is not None else []) + self.held()

    def localised(self, locate: Callable[[ModelFile], Path]) -> JobModels:
        """The same picks at the paths `locate` gives (the worker's verified cache for the store's keys)."""
        paths = {file.name: locate(file) for file in self.files()}

        def at(file: ModelFile) -> ModelFile:
            return replace(file, path=paths[file.name])

        def maybe(file: ModelFile | None) -> ModelFile | None:
            return at(file) if file is not None else None

        return JobModels(
            checkpoint=maybe(self.checkpoint), vae=maybe(self.vae), hires_checkpoint=maybe(self.hires_checkpoint),
            loras=tuple(replace(lora, file=at(lora.file)) for lora in self.loras),
            embeddings=tuple(at(file) for file in self.embeddings),
            controlnets=tuple(at(file) for file in self.controlnets),
            upscalers=tuple(replace(upscaler, file=at(upscaler.file)) for upscaler in self.upscalers),
        )  # fmt: skip


def resolve_models(request: Generation | Removal | Upscale, files: JobFiles) -> JobModels:
    """The files `request` names or uses among the job's `files`; a name the job lacks is an EngineError naming
    the payload key and the job's models of that type."""
    if isinstance(request, Removal):
        return JobModels()  # the deployment's rembg models, never the job's
    if isinstance(request, Upscale):
        return JobModels(upscalers=_upscalers(files, request.named_models()))
    checkpoint = pick_checkpoint(request, files)
    if checkpoint is None:
        raise EngineError(f"a {request.task} job needs a Stable-diffusion model")
    loras: dict[str, Lora] = {}
    for tag in request.networks:
        if tag.kind == "lora":
            file = find_model(files.loras, tag.name, key=f"the prompt's <lora:{tag.name}>", kind="Lora")
            lora = Lora(file, tag.weight)
            loras[lora.adapter] = Lora(file, loras[lora.adapter].weight + tag.weight) if lora.adapter in loras else lora
    hires_upscaler = [entry for entry in request.named_models() if entry[2] == "hr_upscaler"]
    return JobModels(
        checkpoint=checkpoint,
        vae=pick_vae(request, files),
        hires_checkpoint=pick_hires_checkpoint(request, files, checkpoint),
        loras=tuple(loras.values()),
        embeddings=tuple(mentioned_embeddings(request, files)),
        controlnets=tuple(
            find_model(files.controlnets, unit.model, key=f"{unit.label}.model", kind="ControlNet")
            for unit in request.control_units
        ),
        upscalers=_upscalers(files, hires_upscaler),
    )


def _upscalers(files: JobFiles, named: list[tuple[str, str, str]]) -> tuple[Upscaler, ...]:
    return tuple(
        Upscaler(key, find_model(files.upscalers, name, key=key, kind="Upscaler"))
        for kind, name, key in named
        if kind == "Upscaler" and name not in PIXEL_UPSCALERS
    )
