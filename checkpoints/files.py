"""What a checkpoint file may be, checked before a checkpoint becomes Active (architecture.md §5).

- `.safetensors`: the header is parsed and must describe exactly the bytes that follow it.
- `.yaml` / `.yml` (model configs): parsed with yaml.safe_load, at most 1 MiB.
- tar archives (the ESD WebUI uploads models packed as `models/<type>/<file>`, under the model's own name):
  unpacked into the checkpoint's folder; only regular files, no links, no paths that leave the folder.
- pickle formats (`.ckpt`, `.pt`, `.pth`, `.bin`) are refused, whatever their content: loading them runs code.
"""

import hashlib
import json
import queue
import re
import struct
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

import yaml

from esd.storage import CHUNK, ObjectStorage

SAFETENSORS = ".safetensors"
YAML = (".yaml", ".yml")
ALLOWED_EXTENSIONS = (SAFETENSORS, *YAML)
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
SAFETENSORS_DTYPES = {
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
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
            f"{name} is a pickle format, which can run code when loaded, so it is refused: "
            "convert it to .safetensors (for example with the safetensors library's convert script) and upload that"
        )
    if not lowered.endswith(ALLOWED_EXTENSIONS):
        raise FileRejected(f"{name}: only .safetensors and .yaml files (or tar archives of them) are accepted")
    return name


def is_tar(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"


def _pickle_like(head: bytes) -> bool:
    # Protocol 2+ pickles start with 0x80 <protocol>; torch's zip format starts with "PK\x03\x04".
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head.startswith(b"PK\x03\x04")


def check_safetensors(storage: ObjectStorage, key: str, name: str, size: int) -> None:
    head = storage.read_range(key, 0, 8)
    if _pickle_like(storage.read_range(key, 0, 4)):
        raise FileRejected(f"{name} holds pickled (torch) data, not safetensors; convert it to .safetensors")
    if len(head) < 8:
        raise FileRejected(f"{name} is too short to be a safetensors file ({size} bytes)")
    (header_length,) = struct.unpack("<Q", head)
    if header_length > min(MAX_HEADER_BYTES, size - 8):
        raise FileRejected(f"{name} is not a safetensors file, or it is truncated (its header cannot be read)")
    try:
        header = json.loads(storage.read_range(key, 8, header_length))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FileRejected(f"{name}: the safetensors header is not valid JSON") from exc
    if not isinstance(header, dict):
        raise FileRejected(f"{name}: the safetensors header is not a JSON object")
    data_end = 0
    for tensor, entry in header.items():
        if tensor == "__metadata__":
            if not isinstance(entry, dict):
                raise FileRejected(f"{name}: __metadata__ must be an object of strings")
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if (
            not isinstance(entry, dict)
            or entry.get("dtype") not in SAFETENSORS_DTYPES
            or not isinstance(shape, list)
            or not all(isinstance(dim, int) and dim >= 0 for dim in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(offset, int) for offset in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise FileRejected(f"{name}: tensor {tensor!r} has an invalid safetensors header entry")
        data_end = max(data_end, offsets[1])
    if data_end != size - 8 - header_length:
        raise FileRejected(
            f"{name} is truncated or padded: its header describes {data_end} bytes of tensors, "
            f"the file holds {size - 8 - header_length}"
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


def check_stored(storage: ObjectStorage, key: str, name: str, size: int) -> None:
    """Check one stored (non-tar) file by its extension."""
    check_filename(name)
    if name.lower().endswith(SAFETENSORS):
        check_safetensors(storage, key, name, size)
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


def extract_tar(storage: ObjectStorage, key: str, folder: str, limit: int) -> list[StoredFile]:
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
        check_stored(storage, f"{folder}/{file.name}", file.name, file.size)
    return stored


def ingest(
    storage: ObjectStorage, *, folder: str, name: str, limit: int, sha256: str = "", size: int | None = None
) -> list[StoredFile]:
    """Check the stored object `folder/name` and return the files it makes: itself, or a tar's members.

    `sha256`/`size` are passed when the caller computed them while writing; otherwise the object is read once.
    """
    key = f"{folder}/{name}"
    if is_tar(storage.read_range(key, 0, 512)):
        files = extract_tar(storage, key, folder, limit)
        if name not in {file.name for file in files}:
            storage.delete(key)  # the archive itself is not a model file
        return files
    if not sha256 or size is None:
        sha256, size = sha256_of(storage, key)
    check_stored(storage, key, name, size)
    return [StoredFile(name=name, size=size, sha256=sha256)]
