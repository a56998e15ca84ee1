"""Object storage: what the apps need from the store, as a thin layer over its Django storage backend.

The backends are django-storages' `S3Storage` (any S3-compatible store) and Django's `FileSystemStorage` (a local
folder), configured once in esd/storage_backends.py. They do the plain object work (size, open, delete); this
layer adds what ESD's clients need and Django's Storage API has no word for: presigned PUT/GET URLs and presigned
multipart uploads (boto3's own presigning and multipart calls, on the backend's client), streaming writes in
constant memory (boto3's transfer manager; on the local store a file renamed into place, so readers never see
half an object), ranged reads, and prefix deletion. Everything goes through `get_storage()`.

The local store's "presigned" URLs are signed, expiring, single-purpose URLs of esd.storage_views, which stream
request bodies to disk and answer S3-style ETags, so clients use both stores the same way. Keys are checked so that
nothing is ever written outside the root.
"""

import contextlib
import errno
import hashlib
import json
import shutil
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol

from django.conf import settings
from django.core import signing
from django.core.exceptions import SuspiciousFileOperation
from django.urls import reverse

from .storage_backends import backend_config

if TYPE_CHECKING:
    from django.core.files.storage import FileSystemStorage
    from storages.backends.s3 import S3Storage as S3Backend

CHUNK = 1024 * 1024
URL_LIFETIME = 3600  # seconds; ESD's presigned URLs lived one hour
SIGNING_SALT = "esd.storage.url"


class Readable(Protocol):
    """Anything with read(n): a file, or a Django request streaming its body."""

    def read(self, size: int = ..., /) -> bytes: ...


class StorageError(Exception):
    """A storage operation failed for a reason a person can act on (bad ETag, missing part, expired upload...)."""


class StorageFull(StorageError):
    """The local store's disk (or quota) is full, or read-only: nothing was written; an operator must make room."""


@contextlib.contextmanager
def refusing_when_full(key: str) -> Iterator[None]:
    """Turn a full or read-only disk into StorageFull, naming the object. Other OSErrors pass unchanged: they may
    come from the source being copied (a broken download), not from the store."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise StorageFull(f"the store has no room: {key} was not written ({exc.strerror}); free space, then "
                              "try again") from exc  # fmt: skip
        raise


def check_key(key: str) -> str:
    """Refuse keys that could leave the storage root or clash with the store's own files."""
    parts = key.split("/")
    if (
        not key
        or len(key) > 1024
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(part in ("", ".", "..") or part.startswith(".") for part in parts)
    ):
        raise StorageError(f"invalid storage key {key!r}")
    return key


class IteratorReader:
    """A read()-able file over an iterator of byte chunks, so boto3's transfer manager can stream it."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class ObjectStorage(ABC):
    """What the apps need from an object store. Keys are relative to the deployment's single bucket."""

    bucket: str

    def uri(self, key: str) -> str:
        """ESD's wire form of a location (`s3://bucket/key`), which its clients expect whatever the store."""
        return f"s3://{self.bucket}/{key}"

    def location(self, key: str) -> str:
        """Where the object really is, for people (the admin): the URI on S3, the file's path on the local store."""
        return self.uri(key)

    @abstractmethod
    def presign_put(self, key: str, expires: int = URL_LIFETIME, max_bytes: int | None = None) -> str:
        """A URL that accepts one PUT of `key`. `max_bytes`: the most it may take, where the store can hold a URL to
        it (the local store; S3's presigned PUT cannot, and `start` checks the size again)."""

    @abstractmethod
    def presign_get(self, key: str, expires: int = URL_LIFETIME) -> str: ...

    @abstractmethod
    def multipart_start(self, key: str) -> str:
        """Start a multipart upload of `key`; returns its upload id."""

    @abstractmethod
    def multipart_part_url(self, key: str, upload_id: str, part_number: int, expires: int = URL_LIFETIME) -> str: ...

    @abstractmethod
    def multipart_complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        """Assemble the parts, given as (PartNumber, ETag), in order. Raises StorageError."""

    @abstractmethod
    def multipart_abort(self, key: str, upload_id: str) -> None: ...

    @abstractmethod
    def write_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Write an object from an iterator of chunks, in constant memory; returns its size. The object appears
        whole or not at all."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A streaming reader of the object (call close())."""

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes: ...

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The object's size, or None when it does not exist."""

    @abstractmethod
    def copy(self, source: str, target: str) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix` (a folder: it must end with '/') and abort its unfinished uploads."""

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]: ...

    def check_room(self, key: str, length: int) -> None:
        """Refuse (StorageFull) before writing `length` bytes that cannot fit. S3 has no such limit: a no-op."""
        return None


# --- Local folder -------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def incoming_file(folder: Path) -> Iterator[IO[bytes]]:
    """A temporary file in `folder` (so a rename onto the target is atomic): removed if the block fails, kept for
    the caller to rename into place otherwise. Readers never see half a file."""
    out = tempfile.NamedTemporaryFile(dir=folder, prefix=".incoming-", delete=False)  # noqa: SIM115 (kept on success)
    try:
        with out:
            yield out
        # closed, so flushed: a disk that filled up while the last buffer waited shows here at the latest
    except BaseException:
        Path(out.name).unlink(missing_ok=True)
        raise


def _md5_etag(digest: "hashlib._Hash") -> str:
    return f'"{digest.hexdigest()}"'


def human_bytes(value: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


class LocalStorage(ObjectStorage):
    """Objects as files under `root`. Multipart parts wait in `root/.multipart/<upload id>/` until completed."""

    # Left free beside an upload, as the disk allows: the database, logs and the model cache may share it.
    ROOM_MARGIN = 64 * 1024**2

    def __init__(self, backend: "FileSystemStorage", bucket: str, public_url: str) -> None:
        self.backend = backend
        self.root = Path(backend.location).resolve()
        self.bucket = bucket
        self.public_url = public_url.rstrip("/")
        self.uploads = self.root / ".multipart"

    # paths

    def location(self, key: str) -> str:
        return str(self.root / key)

    def path(self, key: str) -> Path:
        """The key's file: FileSystemStorage's own path (which refuses to leave the root), after the key rules."""
        try:
            path = Path(self.backend.path(check_key(key))).resolve()
        except SuspiciousFileOperation as exc:
            raise StorageError(f"invalid storage key {key!r}") from exc
        if not path.is_relative_to(self.root):  # a link inside the root that points out of it
            raise StorageError(f"invalid storage key {key!r}")
        return path

    def upload_dir(self, upload_id: str) -> Path:
        if not upload_id.isalnum():
            raise StorageError("invalid upload id")
        return self.uploads / upload_id

    # signed URLs
    def _signed_url(self, expires: int, **claims: Any) -> str:
        token = signing.dumps({**claims, "exp": int(time.time()) + expires}, salt=SIGNING_SALT, compress=True)
        return f"{self.public_url}{reverse('storage-object', args=[token])}"

    @staticmethod
    def verify(token: str) -> dict[str, Any]:
        """The claims of a signed URL; StorageError when it was tampered with or has expired."""
        try:
            claims = signing.loads(token, salt=SIGNING_SALT)
        except signing.BadSignature as exc:
            raise StorageError("this URL is not valid (bad signature)") from exc
        if claims.get("exp", 0) < time.time():
            raise StorageError("this URL has expired; ask for a new one")
        return claims

    def presign_put(self, key: str, expires: int = URL_LIFETIME, max_bytes: int | None = None) -> str:
        claims: dict[str, Any] = {"max": max_bytes} if max_bytes is not None else {}
        return self._signed_url(expires, op="put", key=check_key(key), **claims)

    def presign_get(self, key: str, expires: int = URL_LIFETIME) -> str:
        return self._signed_url(expires, op="get", key=check_key(key))

    def multipart_part_url(self, key: str, upload_id: str, part_number: int, expires: int = URL_LIFETIME) -> str:
        return self._signed_url(expires, op="part", key=check_key(key), upload=upload_id, part=part_number)

    # multipart
    def multipart_start(self, key: str) -> str:
        self.path(key)  # validates
        upload_id = uuid.uuid4().hex
        folder = self.upload_dir(upload_id)
        folder.mkdir(parents=True)
        (folder / "upload.json").write_text(json.dumps({"key": key}))
        return upload_id

    def _upload_key(self, upload_id: str) -> str | None:
        meta = self.upload_dir(upload_id) / "upload.json"
        return json.loads(meta.read_text())["key"] if meta.exists() else None

    def write_part(self, key: str, upload_id: str, part_number: int, body: Readable, limit: int) -> str:
        """Store one part from a request body; returns its ETag (the part's MD5, quoted, as S3 does)."""
        if self._upload_key(upload_id) != key:
            raise StorageError("no such upload for this key (completed, aborted or never started)")
        if not 1 <= part_number <= 10000:
            raise StorageError("part number must be between 1 and 10000")
        target = self.upload_dir(upload_id) / f"{part_number:05d}"
        return self._receive(body, target, limit)

    def _receive(self, body: Readable, target: Path, limit: int) -> str:
        digest = hashlib.md5(usedforsecurity=False)
        written = 0
        with refusing_when_full(str(target.relative_to(self.root))), incoming_file(target.parent) as out:
            while chunk := body.read(CHUNK):
                written += len(chunk)
                if written > limit:
                    raise StorageError(f"upload is larger than the {limit}-byte limit")
                digest.update(chunk)
                out.write(chunk)
        Path(out.name).replace(target)
        return _md5_etag(digest)

    def check_room(self, key: str, length: int) -> None:
        existing = next(folder for folder in (self.root, *self.root.parents) if folder.exists())  # root may be new
        disk = shutil.disk_usage(existing)
        margin = min(self.ROOM_MARGIN, disk.total // 20)
        if length + margin > disk.free:
            raise StorageFull(
                f"the store has no room for {key}: it is {human_bytes(length)} and {human_bytes(disk.free)} is free "
                f"(keeping {human_bytes(margin)} spare); free space on {self.root}, then try again"
            )

    def write_object(self, key: str, body: Readable, limit: int) -> str:
        target = self.path(key)
        with refusing_when_full(key):
            target.parent.mkdir(parents=True, exist_ok=True)
        return self._receive(body, target, limit)

    def multipart_complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        if self._upload_key(upload_id) != key:
            raise StorageError("NoSuchUpload: the upload does not exist (completed, aborted or never started)")
        if not parts:
            raise StorageError("no parts were given")
        folder = self.upload_dir(upload_id)
        numbers = [number for number, _ in parts]
        if numbers != sorted(set(numbers)):
            raise StorageError("parts must be listed once each, in ascending PartNumber order")
        files = []
        for number, etag in parts:
            part = folder / f"{number:05d}"
            if not part.exists():
                raise StorageError(f"InvalidPart: part {number} was never uploaded")
            digest = hashlib.md5(usedforsecurity=False)
            with part.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
            if etag.strip('"') != digest.hexdigest():
                raise StorageError(f"InvalidPart: the ETag of part {number} does not match the uploaded data")
            files.append(part)
        # The parts are appended to the first, each deleted once copied, and the whole renamed into place: the disk
        # holds a multi-gigabyte upload once (plus one part), not twice. What a failure leaves goes when the upload
        # is aborted (its checkpoint fails, and its folder and parts are cleaned).
        target = self.path(key)
        with refusing_when_full(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            first, rest = files[0], files[1:]
            with first.open("ab") as out:
                for part in rest:
                    with part.open("rb") as handle:
                        shutil.copyfileobj(handle, out, CHUNK)
                    part.unlink()
        first.replace(target)
        shutil.rmtree(folder, ignore_errors=True)

    def multipart_abort(self, key: str, upload_id: str) -> None:
        if self._upload_key(upload_id) == key:
            shutil.rmtree(self.upload_dir(upload_id), ignore_errors=True)

    # objects
    def write_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        target = self.path(key)
        written = 0
        # Write beside the target and rename: readers never see half an object, even one they are reading now.
        with refusing_when_full(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            with incoming_file(target.parent) as out:
                for chunk in chunks:
                    out.write(chunk)
                    written += len(chunk)
        Path(out.name).replace(target)
        return written

    def open(self, key: str) -> BinaryIO:
        self.path(key)  # the key rules first
        try:
            return self.backend.open(key, "rb")  # type: ignore[return-value]
        except FileNotFoundError as exc:
            raise StorageError(f"no object {key}") from exc

    def read_range(self, key: str, start: int, length: int) -> bytes:
        with self.open(key) as handle:
            handle.seek(start)
            return handle.read(length)

    def size(self, key: str) -> int | None:
        return self.backend.size(key) if self.path(key).is_file() else None

    def copy(self, source: str, target: str) -> None:
        with self.open(source) as handle:
            self.write_stream(target, iter(lambda: handle.read(CHUNK), b""))

    def delete(self, key: str) -> None:
        self.path(key)
        self.backend.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise StorageError("a prefix to delete must end with '/'")
        keys = self.list_keys(prefix)
        folder = self.path(prefix.rstrip("/"))
        if folder.is_dir():
            shutil.rmtree(folder)
        if self.uploads.is_dir():
            for upload in self.uploads.iterdir():
                key = self._upload_key(upload.name)
                if key is not None and key.startswith(prefix):
                    shutil.rmtree(upload, ignore_errors=True)
        return len(keys)

    def list_keys(self, prefix: str) -> list[str]:
        folder = self.path(prefix.rstrip("/"))
        if not folder.is_dir():
            return []
        return sorted(
            str(path.relative_to(self.root))
            for path in folder.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        )


# --- S3-compatible ------------------------------------------------------------------------------------------------


class S3Storage(ObjectStorage):
    """Any S3-compatible store, through django-storages' S3Storage. Presigned URLs are made by a second backend whose
    endpoint is the one clients outside the server's network use (ESD_S3_PUBLIC_ENDPOINT_URL)."""

    def __init__(self, backend: "S3Backend", presigning: "S3Backend") -> None:
        self.backend = backend
        self.presigning = presigning
        self.bucket = backend.bucket_name

    @property
    def client(self) -> Any:
        """The backend's boto3 client (django-storages keeps one per thread)."""
        return self.backend.connection.meta.client

    @property
    def presigner(self) -> Any:
        return self.presigning.connection.meta.client

    def _error(self, exc: Exception) -> StorageError:
        from botocore.exceptions import ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as StoreUnreachable

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            return StorageError(f"{error.get('Code', 'Error')}: {error.get('Message', str(exc))}")
        if isinstance(exc, StoreUnreachable | HTTPClientError):
            return StorageError(f"the object store is unavailable: {exc}")
        return StorageError(str(exc))

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def presign_put(self, key: str, expires: int = URL_LIFETIME, max_bytes: int | None = None) -> str:
        return self.presigner.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": check_key(key)}, ExpiresIn=expires
        )

    def presign_get(self, key: str, expires: int = URL_LIFETIME) -> str:
        return self.presigner.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": check_key(key)}, ExpiresIn=expires
        )

    def multipart_start(self, key: str) -> str:
        return self.client.create_multipart_upload(Bucket=self.bucket, Key=check_key(key))["UploadId"]

    def multipart_part_url(self, key: str, upload_id: str, part_number: int, expires: int = URL_LIFETIME) -> str:
        params = {"Bucket": self.bucket, "Key": check_key(key), "UploadId": upload_id, "PartNumber": part_number}
        return self.presigner.generate_presigned_url("upload_part", Params=params, ExpiresIn=expires)

    def multipart_complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]},
            )
        except Exception as exc:
            raise self._error(exc) from exc

    def multipart_abort(self, key: str, upload_id: str) -> None:
        from botocore.exceptions import ClientError

        with contextlib.suppress(ClientError):  # already completed or aborted
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def write_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        from boto3.s3.transfer import TransferConfig

        counted = {"bytes": 0}
        source_errors: list[BaseException] = []

        def counting() -> Iterator[bytes]:
            try:
                for chunk in chunks:
                    counted["bytes"] += len(chunk)
                    yield chunk
            except BaseException as exc:
                source_errors.append(exc)
                raise

        # 8 MiB parts, at most 4 read ahead and 4 in flight: memory stays bounded whatever the object's size.
        config = TransferConfig(multipart_threshold=8 * CHUNK, multipart_chunksize=8 * CHUNK, max_concurrency=4)
        config.max_in_memory_upload_chunks = 4  # s3transfer's own setting (default 10), not in boto3's signature
        try:
            self.client.upload_fileobj(IteratorReader(counting()), self.bucket, check_key(key), Config=config)
        except Exception as exc:
            # s3transfer may surface a failing source as its own error (a cancelled future, say); the caller needs
            # the source's error (a refused or broken download), whichever way it came out.
            if source_errors:
                raise source_errors[0] from None
            if exc.__class__.__module__.startswith(("botocore", "boto3", "s3transfer")):
                raise self._error(exc) from exc
            raise
        return counted["bytes"]

    def open(self, key: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as exc:
            raise self._error(exc) from exc

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
        except Exception as exc:
            raise self._error(exc) from exc
        return body["Body"].read()

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return self.backend.size(key)
        except (FileNotFoundError, ClientError):  # django-storages says 404 as FileNotFoundError
            return None

    def copy(self, source: str, target: str) -> None:
        self.client.copy({"Bucket": self.bucket, "Key": source}, self.bucket, check_key(target))

    def delete(self, key: str) -> None:
        self.backend.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise StorageError("a prefix to delete must end with '/'")
        keys = self.list_keys(prefix)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix).get("Uploads", [])
        for upload in uploads:
            self.multipart_abort(upload["Key"], upload["UploadId"])
        return len(keys)

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys


def _with_retries(config: dict[str, Any]) -> dict[str, Any]:
    """The S3 backend's botocore config, with botocore's "standard" retries (backoff on throttling and 5xx) as the
    store always had. A Config object cannot be in settings' JSON-like description, so it is added here; the same
    addressing style and signature version as the description's."""
    from botocore.config import Config

    options = config["OPTIONS"]
    options["client_config"] = Config(
        signature_version=options["signature_version"],
        s3={"addressing_style": options["addressing_style"]},
        retries={"mode": "standard"},
    )
    return config


@lru_cache(maxsize=4)
def _build(config: str, presigning: str | None, bucket: str, public_url: str) -> ObjectStorage:
    from django.core.files.storage import storages

    if presigning is not None:
        backend, presigner = (storages.create_storage(_with_retries(json.loads(one))) for one in (config, presigning))
        return S3Storage(backend, presigner)  # type: ignore[arg-type]
    backend = storages.create_storage(json.loads(config))
    return LocalStorage(backend, bucket, public_url)  # type: ignore[arg-type]  # FileSystemStorage, by its config


def _backend(endpoint_url: str | None = None) -> dict[str, Any]:
    return backend_config(
        settings.ESD_STORAGE,
        root=Path(settings.ESD_STORAGE_ROOT),
        bucket=settings.AWS_STORAGE_BUCKET_NAME,
        endpoint_url=endpoint_url or settings.AWS_S3_ENDPOINT_URL,
        region=settings.AWS_S3_REGION_NAME,
        access_key=settings.AWS_ACCESS_KEY_ID,
        secret_key=settings.AWS_SECRET_ACCESS_KEY,
    )


def get_storage() -> ObjectStorage:
    """The configured store, over the backend STORAGES["default"] describes (built from the current settings, once
    per distinct configuration, so tests may switch stores)."""
    presigning = None
    if settings.ESD_STORAGE == "s3":
        presigning = json.dumps(_backend(settings.ESD_S3_PUBLIC_ENDPOINT_URL), sort_keys=True)
    config = json.dumps(_backend(), sort_keys=True)
    return _build(config, presigning, settings.AWS_STORAGE_BUCKET_NAME, settings.ESD_PUBLIC_URL)
