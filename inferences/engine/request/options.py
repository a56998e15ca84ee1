"""What a worker tells the engine about itself (plain data; the Django settings fill it in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .limits import Limits


@dataclass(frozen=True)
class EngineOptions:
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N" (the worker's --device)
    dtype: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU), fp16, bf16, fp32 or fp8 (models/float8.py)
    compile: str = "off"  # torch.compile of the UNet and VAE decoder: a mode of compiling.MODES
    compile_backend: str = "inductor"  # tests count compilations with "eager"
    # where compiled graphs are kept across restarts (inductor's FX graph and AOTAutograd caches); None: torch's own
    # temporary folder, which a container's restart loses
    compile_cache: Path | None = None
    fuse_qkv: bool = True  # CUDA: fused attention QKV projections
    vae_tiling: bool = False  # decode large images in tiles to bound memory
    cache_bytes: int = 8 * 1024**3  # pipeline cache budget per worker process
    threads: int = 0  # CPU threads for torch in this process; 0: torch's default (all cores)
    u2net_home: Path | None = None  # folder holding the background-removal models (<name>.onnx)
    limits: Limits = field(default_factory=Limits)
    # "report": a payload key the engine does not honour is listed in ignored_parameters and the job runs;
    # "refuse": such a job fails with the list instead (for teams that prefer a refusal to a different picture)
    unhonoured: str = "report"
    # the most a job may need (engine/memory.py's estimate); 0: the machine's memory (CUDA: the device's) less 10 %
    memory_bytes: int = 0


@dataclass(frozen=True)
class ModelFile:
    """A model file already on local disk (the worker's model cache), with what the job knows about it."""

    path: Path
    name: str  # the file name as uploaded: "v1-5-pruned.safetensors"
    sha256: str = ""

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0] if "." in self.name else self.name

    @property
    def short_hash(self) -> str:
        """A1111's "AutoV2" hash: the first 10 hex digits of the sha256."""
        return self.sha256[:10]


@dataclass(frozen=True)
class JobFiles:
    checkpoint: ModelFile | None = None  # the job's first Stable-diffusion model: the one it runs by default
    checkpoints: tuple[ModelFile, ...] = ()  # all of them (override_settings.sd_model_checkpoint picks one)
    vaes: tuple[ModelFile, ...] = ()
    loras: tuple[ModelFile, ...] = ()
    embeddings: tuple[ModelFile, ...] = ()
    controlnets: tuple[ModelFile, ...] = ()
    upscalers: tuple[ModelFile, ...] = ()


class Progress(Protocol):
    """What a job's run reports to, and asks, as it goes."""

    def step(self, done: int, total: int) -> None: ...

    def cancelled(self) -> bool: ...

    def wants_preview(self, done: int) -> bool:
        """Whether to make a live preview after step `done` (the engine makes none otherwise: it costs a sync)."""
        ...

    def preview(self, picture: bytes) -> None:
        """The live preview of the job's images (a small JPEG) after the step wants_preview accepted."""
        ...


class NoProgress:
    def step(self, done: int, total: int) -> None:
        pass

    def cancelled(self) -> bool:
        return False

    def wants_preview(self, done: int) -> bool:
        return False

    def preview(self, picture: bytes) -> None:
        pass
