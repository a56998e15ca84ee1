"""The engine's options from Django settings (the engine itself knows no Django)."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .engine.request.limits import Limits
from .engine.request.options import EngineOptions


def engine_limits() -> Limits:
    side = settings.ESD_MAX_IMAGE_SIDE
    return Limits(
        max_side=side,
        max_pixels=side * side,
        max_steps=settings.ESD_MAX_STEPS,
        max_images=settings.ESD_MAX_IMAGES_PER_JOB,
        max_batch_size=min(8, settings.ESD_MAX_IMAGES_PER_JOB),
    )


def engine_options(device: str = "cpu") -> EngineOptions:
    return EngineOptions(
        device=device,
        dtype=settings.ESD_ENGINE_DTYPE,
        compile=settings.ESD_ENGINE_COMPILE,
        compile_cache=settings.ESD_DATA_DIR / "torch-compile",
        fuse_qkv=settings.ESD_ENGINE_FUSE_QKV,
        vae_tiling=settings.ESD_ENGINE_VAE_TILING,
        cache_bytes=settings.ESD_PIPELINE_CACHE_BYTES,
        threads=settings.ESD_TORCH_THREADS,
        u2net_home=settings.U2NET_HOME,
        limits=engine_limits(),
        unhonoured=settings.ESD_UNHONOURED_PARAMETERS,
        memory_bytes=settings.ESD_WORKER_MEMORY_BYTES,
    )


def check_engine_dtype(*, device: str, **kwargs: Any) -> None:
    """esd.signals.worker_checking receiver: refuse a worker whose ESD_ENGINE_DTYPE its device cannot run (fp8
    without float8 tensor cores, or without torchao), which could only fail every job, with the engine's reason."""
    if settings.ESD_ENGINE_DTYPE != "fp8":
        return
    from .engine.errors import EngineError
    from .engine.models.device import torch_dtype

    try:
        torch_dtype(engine_options(device))
    except EngineError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


_engines: dict[str, Any] = {}
_engines_lock = threading.Lock()


def engine_for(device: str) -> Any:
    """This process's engine for `device`: one pipeline cache per device, shared by the process's worker threads."""
    from .engine.runner import Engine

    with _engines_lock:
        if device not in _engines:
            _engines[device] = Engine(engine_options(device))
        return _engines[device]
