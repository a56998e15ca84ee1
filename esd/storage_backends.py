"""The Django storage backend of the configured object store, described once: settings.py makes it
`STORAGES["default"]` and esd.storage builds its layer (presigned multipart, signed local URLs, streaming writes)
over the same backend. No Django import here, so settings.py can use it."""

from pathlib import Path
from typing import Any

S3_BACKEND = "storages.backends.s3.S3Storage"
LOCAL_BACKEND = "django.core.files.storage.FileSystemStorage"


def backend_config(
    kind: str,
    *,
    root: Path,
    bucket: str,
    endpoint_url: str | None,
    region: str | None,
    access_key: str | None,
    secret_key: str | None,
) -> dict[str, Any]:
    """`STORAGES` entry of the store: django-storages' S3Storage for "s3" (path-style addressing and SigV4, which
    every S3-compatible server accepts), Django's FileSystemStorage under `root` for "local"."""
    if kind == "s3":
        return {
            "BACKEND": S3_BACKEND,
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": endpoint_url,
                "region_name": region or "us-east-1",
                "access_key": access_key,
                "secret_key": secret_key,
                "addressing_style": "path",
                "signature_version": "s3v4",
                "file_overwrite": True,
            },
        }
    if kind == "local":
        return {"BACKEND": LOCAL_BACKEND, "OPTIONS": {"location": str(root)}}
    raise ValueError(f"ESD_STORAGE must be 'local' or 's3', not {kind!r}")
