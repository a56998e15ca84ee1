"""Background removal through the `rembg` package, with models only from the operator's folder (never downloaded).

rembg fetches a missing model from GitHub on first use; the engine checks that the file is there first, so a missing
model is a failed job that says where to put the file.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import EngineError
from ..request.payload import Removal

_sessions: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def model_path(home: Path, name: str) -> Path | None:
    for candidate in (home / f"{name}.onnx", home / "models" / name / f"{name}.onnx"):
        if candidate.is_file():
            return candidate
    return None


def _session(home: Path, name: str) -> Any:
    key = (str(home), name)
    with _lock:
        if key not in _sessions:
            if model_path(home, name) is None:
                raise EngineError(
                    f"the background-removal model {name} is not installed on this worker: "
                    f"put {name}.onnx in U2NET_HOME ({home}), or ask for a model that is installed"
                )
            os.environ["U2NET_HOME"] = str(home)  # rembg reads its model folder from the environment
            import rembg

            _sessions[key] = rembg.new_session(name)
        return _sessions[key]


def installed_models(home: Path | None) -> list[str]:
    from ..request.payload import REMBG_MODELS

    return [name for name in REMBG_MODELS if home is not None and model_path(home, name) is not None]


def remove_background(request: Removal, home: Path | None) -> Image.Image:
    if home is None:
        raise EngineError("background removal is not set up on this worker (U2NET_HOME is not set)")
    import rembg

    session = _session(home, request.model)
    result = rembg.remove(
        request.image.convert("RGB"),
        session=session,
        only_mask=request.return_mask,
        alpha_matting=request.alpha_matting,
        alpha_matting_foreground_threshold=request.foreground_threshold,
        alpha_matting_background_threshold=request.background_threshold,
        alpha_matting_erode_size=request.erode_size,
    )
    if not isinstance(result, Image.Image):
        raise EngineError("background removal returned no image")
    return result
