"""A job's plan: its request checked once, at `start`, with everything worked out from it, stored with the job.

The web process plans a job when it is started (`plan_job`): the payload parsed and validated, the model files it
names picked from the job's, its batch key, and what its peak memory depends on. The plan is stored on the job's row
as JSON (`plan_to_json`), its input pictures and any long text beside it in the store as blobs; the worker reads it
back (`plan_from_json`) and runs it without parsing, resolving or estimating anything again. Only what the worker
alone knows is checked there: its device's memory, from the plan's needs at its dtype.

A stored plan carries its format's version: one written by another version of the code does not load, and the job
fails saying so, rather than running with a meaning its payload did not have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import EngineError
from .batch_key import ALONE, batch_key
from .images import INPUT_FORMATS, SOURCE, load_image, source_bytes
from .job_models import JobModels, resolve_models
from .limits import Limits
from .memory import MemoryNeeds, memory_needs
from .options import JobFiles, ModelFile
from .payload import Generation, Removal, Upscale, parse_request

if typing.TYPE_CHECKING:
    from .memory import HeaderOf

PLAN_VERSION = 1
# Strings longer than this (a ControlNet unit's picture echoed in the request's parameters) go to the store as blobs,
# so the row keeps a plan of a few kilobytes.
BLOB_CHARS = 16 * 1024
BLOB_NAME = re.compile(r"[0-9a-f]{64}\.(bin|txt)")  # fullmatch: a name, never a path

PutBlob = Callable[[str, bytes], None]  # (name, data): store one blob of the plan
GetBlob = Callable[[str], bytes]


class PlanError(EngineError):
    """A stored plan that does not load: written by another version of the code, or damaged."""


@dataclass(frozen=True)
class JobPlan:
    task: str
    request: Generation | Removal | Upscale
    models: JobModels
    batch_key: str  # ALONE: the job runs by itself
    memory: MemoryNeeds | None  # None: background removal (the deployment's rembg models)
    version: int = PLAN_VERSION

    @property
    def ignored(self) -> list[str]:
        return self.request.ignored

    @property
    def image_count(self) -> int:
        return self.request.total_images if isinstance(self.request, Generation) else 1

    @property
    def work(self) -> float:
        """Megapixel-steps of every image (the unit a worker's measured speed turns into seconds); 0: not a
        generation, whose time is not estimated."""
        return self.request.megapixel_steps * self.request.total_images if isinstance(self.request, Generation) else 0


def plan_job(
    task: str, payload: bytes | str | dict[str, Any], files: JobFiles, limits: Limits, header_of: HeaderOf
) -> JobPlan:
    """Check a job's payload against its files and work out what running it takes; an EngineError says what to
    change. `header_of` reads a model's safetensors header (from the store, or a local file)."""
    request = parse_request(task, payload, limits)
    models = resolve_models(request, files)
    key = batch_key(request, models) if isinstance(request, Generation) else ALONE
    return JobPlan(task, request, models, key, memory_needs(request, models, header_of))


def plan_to_json(plan: JobPlan, put_blob: PutBlob) -> dict[str, Any]:
    """The plan as JSON for the job's row; pictures (as the client sent them) and long texts through `put_blob`."""
    return _Encoder(put_blob).value(plan, JobPlan)


def plan_from_json(data: Any, get_blob: GetBlob) -> JobPlan:
    if data is None:
        raise PlanError("the job has no plan (an earlier version of the server started it); create and start it again")
    if not isinstance(data, dict) or data.get("version") != PLAN_VERSION:
        found = data.get("version") if isinstance(data, dict) else None
        raise PlanError(
            f"the job's plan was made by another version of the server (plan format {found}, this worker reads "
            f"{PLAN_VERSION}); create and start the job again"
        )
    try:
        plan = _Decoder(get_blob).value(data, JobPlan)
    except PlanError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"the job's plan does not load ({exc}); create and start the job again") from exc
    assert isinstance(plan, JobPlan)
    return plan


def planned_checkpoint(data: Any) -> ModelFile | None:
    """The checkpoint file a stored plan picked, read without its blobs (a worker's warm-up asks it of its endpoint's
    last job); None for a plan of another version, of a job without a checkpoint, or one that does not load."""
    if not isinstance(data, dict) or data.get("version") != PLAN_VERSION:
        return None
    models = data.get("models")
    try:
        file = _Decoder(_no_blob).value(
            models.get("checkpoint") if isinstance(models, dict) else None, ModelFile | None
        )
    except (PlanError, KeyError, TypeError, ValueError):
        return None
    return file if isinstance(file, ModelFile) else None


def _no_blob(name: str) -> bytes:
    raise PlanError("a checkpoint's record holds no blob")


def _blob_name(data: bytes, kind: str) -> str:
    return f"{hashlib.sha256(data).hexdigest()}.{kind}"


def _union_members(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def _item_hint(hint: Any, index: int) -> Any:
    """The type of item `index` of a list[X], tuple[X, ...] or tuple[A, B] hint."""
    args = typing.get_args(hint)
    if not args:
        return Any
    if typing.get_origin(hint) is tuple and args[-1] is not Ellipsis:
        return args[index]
    return args[0]


class _Encoder:
    def __init__(self, put_blob: PutBlob) -> None:
        self.put_blob = put_blob

    def blob(self, data: bytes, kind: str) -> str:
        name = _blob_name(data, kind)
        self.put_blob(name, data)
        return name

    def value(self, value: Any, hint: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            hints = typing.get_type_hints(type(value))
            encoded = {
                field.name: self.value(getattr(value, field.name), hints[field.name])
                for field in dataclasses.fields(value)
            }
            members = _union_members(hint)
            if members is not None and sum(dataclasses.is_dataclass(member) for member in members) > 1:
                encoded["$type"] = type(value).__name__
            return encoded
        if isinstance(value, Image.Image):
            return {"$image": self.blob(source_bytes(value), "bin")}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, str):
            return {"$text": self.blob(value.encode(), "txt")} if len(value) > BLOB_CHARS else value
        if isinstance(value, float) and not math.isfinite(value):
            return {"$float": repr(value)}  # JSON in PostgreSQL has no Infinity (A1111 writes s_tmax so)
        if isinstance(value, list | tuple):
            return [self.value(each, _item_hint(hint, index)) for index, each in enumerate(value)]
        if isinstance(value, dict):
            return {str(key): self.value(each, Any) for key, each in value.items()}
        return value


class _Decoder:
    def __init__(self, get_blob: GetBlob) -> None:
        self.get_blob = get_blob

    def blob(self, name: Any) -> bytes:
        if not isinstance(name, str) or not BLOB_NAME.fullmatch(name):
            raise PlanError(f"the job's plan names a blob {name!r} it cannot have; create and start the job again")
        return self.get_blob(name)

    def value(self, data: Any, hint: Any, where: str = "plan") -> Any:
        """`data` read back as `hint`; `where` names the field (`request.init_images[0]`) in messages."""
        if isinstance(data, dict) and "$text" in data:
            return self.blob(data["$text"]).decode()
        if isinstance(data, dict) and "$float" in data:
            return float(data["$float"])
        members = _union_members(hint)
        if members is not None:
            if data is None and type(None) in members:
                return None
            choices = [member for member in members if member is not type(None)]
            if len(choices) > 1 and isinstance(data, dict) and "$type" in data:
                choices = [member for member in choices if getattr(member, "__name__", "") == data["$type"]]
            if len(choices) != 1:
                raise PlanError(f"the job's plan holds a {where} of no known kind")
            return self.value(data, choices[0], where)
        if hint is Any:
            if isinstance(data, list):
                return [self.value(each, Any, where) for each in data]
            if isinstance(data, dict):
                return {key: self.value(each, Any, where) for key, each in data.items()}
            return data
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            hints = typing.get_type_hints(hint)
            names = [field.name for field in dataclasses.fields(hint)]  # in order: the same first error every time
            unknown = set(data) - set(names) - {"$type"}
            if unknown:
                raise PlanError(f"the job's plan has fields this server does not know ({', '.join(sorted(unknown))})")
            fields = {name: self.value(data[name], hints[name], f"{where}.{name}") for name in names if name in data}
            return hint(**fields)
        if hint is Image.Image:
            raw = self.blob(data["$image"])
            try:
                image = Image.open(io.BytesIO(raw), formats=INPUT_FORMATS)
            except (OSError, ValueError, SyntaxError) as exc:  # `start` read its header: the blob was changed since
                raise PlanError(
                    f"the job's plan holds a {where} that is no picture; create and start it again"
                ) from exc
            load_image(image, where.removeprefix("plan.request."))  # decoded here: start read its header only
            image.info[SOURCE] = raw
            return image
        if hint is Path:
            return Path(data)
        origin = typing.get_origin(hint)
        if origin in (list, tuple):
            items = [self.value(each, _item_hint(hint, index), f"{where}[{index}]") for index, each in enumerate(data)]
            return tuple(items) if origin is tuple else items
        if origin is dict:
            return {key: self.value(each, Any, where) for key, each in data.items()}
        if hint in (int, str, bool) and not isinstance(data, hint):
            raise PlanError(f"the job's plan holds {data!r:.80} as its {where}, where a {hint.__name__} belongs")
        if hint is float:
            return float(data)
        return data
