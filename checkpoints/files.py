"""What a checkpoint file may be, checked before a checkpoint becomes Active (architecture.md §5).

- `.safetensors`: the header is parsed and must describe exactly the bytes that follow it.
- `.yaml` / `.yml` (model configs): parsed with yaml.safe_load, at most 1 MiB.
- tar archives (the ESD WebUI uploads models packed as `models/<type>/<file>`, under the model's own name):
  unpacked into the checkpoint's folder; only regular files, no links, no paths that leave the folder.
- pickle formats (`.ckpt`, `.pt`, `.pth`, `.bin`) are refused, whatever their content: loading them runs code.
"""

import hashlib
import json
import math
import queue
import re
import struct
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

from esd.storage import CHUNK, ObjectStorage

SAFETENSORS = ".safetensors"
YAML = (".yaml", ".yml")
ALLOWED_EXTENSIONS = (SAFETENSORS, *YAML)
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
# Bytes per element of each safetensors dtype (a tensor's span must be exactly its shape's product times this).
SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8,
}  # fmt: skip
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_YAML_BYTES = 1024 * 1024
MAX_TAR_MEMBERS = 64
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._()+ -]{0,199}$")


class FileRejected(Exception):
    """The file cannot become part of a checkpoint; the message says why and what to do."""


@dataclass
class StoredFile:
    name: str
    size: int
    sha256: str


class BackgroundHasher:
    """sha256 computed in a helper thread while the caller keeps reading and writing.

    hashlib releases the GIL on large updates, so hashing overlaps with network and disk I/O instead of adding to
    it (SHA-256 alone runs at about the speed of a loopback download here). At most `depth` chunks wait.
    """

    def __init__(self, depth: int = 4) -> None:
        self._digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        self.close()
        return self._digest.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def check_filename(name: str) -> str:
    """A file name that is safe as the last part of a storage key, with an accepted extension."""
    if not NAME_PATTERN.match(name) or ".." in name:
        raise FileRejected(
            f"file name {name!r} is not accepted: use at most 200 ASCII letters, digits, spaces and ._()+- "
            "characters, starting with a letter or digit"
        )
    lowered = name.lower()
    if lowered.endswith(PICKLE_EXTENSIONS):
        raise FileRejected(
            f"{name} is a pickle format, which can run code when loaded, so it is refused: upload the model's "
            ".safetensors release (ControlNet, LoRA and upscaler models publish one), or convert it to .safetensors "
            "(for example with the safetensors library's convert script) and upload that"
        )
    if not lowered.endswith(ALLOWED_EXTENSIONS):
        raise FileRejected(f"{name}: only .safetensors and .yaml files (or tar archives of them) are accepted")
    return name


def is_tar(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"


def _pickle_like(head: bytes) -> bool:
    # Protocol 2+ pickles start with 0x80 <protocol>; torch's zip format starts with "PK\x03\x04".
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head.startswith(b"PK\x03\x04")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads hook: a key given twice is refused (JSON parsers disagree on which one wins)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise FileRejected(f"the safetensors header names {key!r} twice")
        found[key] = value
    return found


def _whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor_span(name: str, tensor: str, entry: Any) -> tuple[int, int]:
    """The byte span [begin, end) of one header entry, checked against its dtype and shape."""

    def invalid(problem: str) -> FileRejected:
        return FileRejected(f"{name}: tensor {tensor!r} has an invalid safetensors header entry: {problem}")

    if not isinstance(entry, dict):
        raise invalid("it is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPE_BYTES:
        raise invalid(f"unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_whole_number(dim) for dim in shape):
        raise invalid("its shape is not a list of whole numbers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_whole_number(offset) for offset in offsets):
        raise invalid("its data_offsets are not two whole numbers")
    begin, end = offsets
    if begin > end:
        raise invalid(f"its data_offsets are out of order ({begin} > {end})")
    expected = math.prod(shape) * SAFETENSORS_DTYPE_BYTES[dtype]
    if end - begin != expected:
        raise invalid(f"it spans {end - begin} bytes, but its shape {shape} of {dtype} needs {expected}")
    return begin, end


def check_safetensors(storage: ObjectStorage, key: str, name: str, size: int) -> dict[str, list[int]]:
    """The header must describe exactly the bytes that follow it, as the safetensors library demands when it loads
    the file: every tensor's span matches its shape and dtype, the spans follow one another without gap or overlap,
    and together they cover the data to its last byte. Returns tensor name -> shape."""
    head = storage.read_range(key, 0, 8)
    if _pickle_like(storage.read_range(key, 0, 4)):
        raise FileRejected(f"{name} holds pickled (torch) data, not safetensors; convert it to .safetensors")
    if len(head) < 8:
        raise FileRejected(f"{name} is too short to be a safetensors file ({size} bytes)")
    (header_length,) = struct.unpack("<Q", head)
    if header_length > min(MAX_HEADER_BYTES, size - 8):
        raise FileRejected(f"{name} is not a safetensors file, or it is truncated (its header cannot be read)")
    try:
        header = json.loads(storage.read_range(key, 8, header_length), object_pairs_hook=_unique_keys)
    except RecursionError as exc:
        raise FileRejected(f"{name}: the safetensors header nests too deeply to be a tensor index") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise FileRejected(f"{name}: the safetensors header is not valid JSON") from exc
    if not isinstance(header, dict):
        raise FileRejected(f"{name}: the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values()):
        raise FileRejected(f"{name}: __metadata__ must be an object of strings")
    spans = sorted((_tensor_span(name, tensor, entry), tensor) for tensor, entry in header.items())
    data_end = 0
    for (begin, end), tensor in spans:
        if begin != data_end:
            problem = "overlaps the tensor before it" if begin < data_end else f"leaves bytes {data_end}-{begin} unused"
            raise FileRejected(f"{name}: tensor {tensor!r} {problem}; the tensors' data must follow one another")
        data_end = end
    if data_end != size - 8 - header_length:
        raise FileRejected(
            f"{name} is truncated or padded: its header describes {data_end} bytes of tensors, "
            f"the file holds {size - 8 - header_length}"
        )
    return {tensor: list(entry["shape"]) for tensor, entry in header.items()}


# Tensor-name prefixes that give away what a file is, for the types whose files are checked against their type.
CONTROLNET_MARKS = ("control_model.input_hint_block.", "input_hint_block.", "controlnet_cond_embedding.")
NOT_AN_UPSCALER = {
    "model.diffusion_model.": "a Stable Diffusion checkpoint",
    "lora_": "a LoRA",
    "first_stage_model.": "a VAE",
    "encoder.down.": "a VAE",
    "cond_stage_model.": "a Stable Diffusion checkpoint",
    "conditioner.": "a Stable Diffusion checkpoint",
    **dict.fromkeys(CONTROLNET_MARKS, "a ControlNet"),
}


def check_kind(name: str, kind: str, shapes: dict[str, list[int]]) -> None:
    """A ControlNet or upscaler file must look like one (the worker identifies it exactly when it loads it; this
    refuses the wrong file at upload, with what it is instead)."""
    if kind == "ControlNet" and not any(tensor.startswith(CONTROLNET_MARKS) for tensor in shapes):
        raise FileRejected(
            f"{name} is not a ControlNet model: it has no hint-encoder weights (input_hint_block or "
            "controlnet_cond_embedding); upload a ControlNet .safetensors file, in the original or the diffusers "
            "layout"
        )
    if kind == "Upscaler":
        for prefix, what in NOT_AN_UPSCALER.items():
            if any(tensor.startswith(prefix) for tensor in shapes):
                raise FileRejected(f"{name} is {what}, not an upscaler model; upload it with that type")
        if not any(len(shape) == 4 for shape in shapes.values()):
            raise FileRejected(
                f"{name} is not an upscaler model: it holds no convolution weights (ESRGAN-family networks do)"
            )


def check_yaml(storage: ObjectStorage, key: str, name: str, size: int) -> None:
    if size > MAX_YAML_BYTES:
        raise FileRejected(f"{name} is {size} bytes; a model config must be at most {MAX_YAML_BYTES} bytes")
    try:
        document = yaml.safe_load(storage.read_range(key, 0, size))
    except yaml.YAMLError as exc:
        raise FileRejected(f"{name} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise FileRejected(f"{name} is not a YAML mapping (a model config)")


def check_stored(storage: ObjectStorage, key: str, name: str, size: int, kind: str = "") -> None:
    """Check one stored (non-tar) file by its extension and, for the types that are checked, its content."""
    check_filename(name)
    if name.lower().endswith(SAFETENSORS):
        check_kind(name, kind, check_safetensors(storage, key, name, size))
    else:
        check_yaml(storage, key, name, size)


def sha256_of(storage: ObjectStorage, key: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with storage.open(key) as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _tar_member_name(member: tarfile.TarInfo) -> str:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise FileRejected(f"the archive's member {member.name!r} points outside its folder; it is refused")
    if not member.isfile():
        kind = "link" if member.issym() or member.islnk() else "special file"
        raise FileRejected(f"the archive's member {member.name!r} is a {kind}; only regular files are accepted")
    return check_filename(path.name)


def extract_tar(storage: ObjectStorage, key: str, folder: str, limit: int, kind: str = "") -> list[StoredFile]:
    """Unpack a stored tar archive into `folder` (streaming, constant memory) and check every file."""
    stored: list[StoredFile] = []
    total = 0
    with storage.open(key) as stream:
        try:
            archive = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115 (a stream, closed with `stream`)
            for member in archive:
                if member.isdir():
                    continue
                name = _tar_member_name(member)
                if len(stored) >= MAX_TAR_MEMBERS:
                    raise FileRejected(f"the archive holds more than {MAX_TAR_MEMBERS} files")
                if any(file.name == name for file in stored):
                    raise FileRejected(f"the archive holds two files named {name}")
                total += member.size
                if total > limit:
                    raise FileRejected(f"the archive unpacks to more than the {limit}-byte limit")
                source = archive.extractfile(member)
                assert source is not None  # a regular file
                digest = hashlib.sha256()

                def chunks(source=source, digest=digest) -> Iterator[bytes]:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        yield chunk

                size = storage.write_stream(f"{folder}/{name}", chunks())
                stored.append(StoredFile(name=name, size=size, sha256=digest.hexdigest()))
        except tarfile.TarError as exc:
            raise FileRejected(f"the tar archive is damaged or truncated: {exc}") from exc
    if not stored:
        raise FileRejected("the tar archive holds no files")
    for file in stored:
        check_stored(storage, f"{folder}/{file.name}", file.name, file.size, kind)
    return stored


def ingest(
    storage: ObjectStorage,
    *,
    folder: str,
    name: str,
    limit: int,
    sha256: str = "",
    size: int | None = None,
    kind: str = "",
) -> list[StoredFile]:
    """Check the stored object `folder/name` and return the files it makes: itself, or a tar's members.

    `sha256`/`size` are passed when the caller computed them while writing; otherwise the object is read once.
    """
    key = f"{folder}/{name}"
    if is_tar(storage.read_range(key, 0, 512)):
        files = extract_tar(storage, key, folder, limit, kind)
        if name not in {file.name for file in files}:
            storage.delete(key)  # the archive itself is not a model file
        return files
    if not sha256 or size is None:
        sha256, size = sha256_of(storage, key)
    check_stored(storage, key, name, size, kind)
    return [StoredFile(name=name, size=size, sha256=sha256)]
