"""The storage service against the local store and an S3-compatible server, with presigned URLs used by real HTTP."""

import hashlib
import time
import urllib.error
import urllib.request

import pytest

from esd.storage import LocalStorage, StorageError, check_key

# The live server's request cycle checks its database connection, so these tests allow database access.
pytestmark = pytest.mark.django_db

MiB = 1024 * 1024


def http(method: str, url: str, data: bytes | None = None) -> tuple[int, dict, bytes]:
    # urllib would label a body as a form, which moto's server mishandles; S3 clients send raw bytes.
    headers = {"Content-Type": "application/octet-stream"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_presigned_put_then_get(store):
    status, headers, _ = http("PUT", store.presign_put("a/b/file.bin"), b"hello world")
    assert status == 200
    assert headers["ETag"] == f'"{hashlib.md5(b"hello world", usedforsecurity=False).hexdigest()}"'
    status, _, body = http("GET", store.presign_get("a/b/file.bin"))
    assert (status, body) == (200, b"hello world")
    assert store.size("a/b/file.bin") == 11


def test_multipart_upload_through_presigned_part_urls(store):
    key = "Stable-diffusion/checkpoint/custom/x/model.safetensors"
    parts = [b"a" * (5 * MiB), b"b" * 1000]
    upload_id = store.multipart_start(key)
    etags = []
    for number, data in enumerate(parts, start=1):
        status, headers, _ = http("PUT", store.multipart_part_url(key, upload_id, number), data)
        assert status == 200
        etags.append((number, headers["ETag"]))
    store.multipart_complete(key, upload_id, etags)
    assert store.size(key) == 5 * MiB + 1000
    assert store.read_range(key, 5 * MiB - 2, 4) == b"aabb"


def test_completing_with_a_wrong_etag_fails_and_keeps_the_upload(store):
    key = "t/k/f.bin"
    upload_id = store.multipart_start(key)
    _, headers, _ = http("PUT", store.multipart_part_url(key, upload_id, 1), b"x" * 100)
    with pytest.raises(StorageError):
        store.multipart_complete(key, upload_id, [(1, '"0123456789abcdef0123456789abcdef"')])
    assert store.size(key) is None
    store.multipart_complete(key, upload_id, [(1, headers["ETag"])])  # the right ETag still works
    assert store.size(key) == 100


def test_completing_a_missing_part_fails(store):
    key = "t/k/g.bin"
    upload_id = store.multipart_start(key)
    with pytest.raises(StorageError):
        store.multipart_complete(key, upload_id, [(1, '"d41d8cd98f00b204e9800998ecf8427e"')])


def test_write_stream_and_read_back(store):
    chunks = [bytes([index]) * MiB for index in range(20)]
    assert store.write_stream("big/file.bin", iter(chunks)) == 20 * MiB
    digest = hashlib.sha256()
    with store.open("big/file.bin") as stream:
        while chunk := stream.read(MiB):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_a_failed_stream_leaves_no_object(store):
    def broken():
        yield b"x" * MiB
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        store.write_stream("broken/file.bin", broken())
    assert store.size("broken/file.bin") is None
    assert store.list_keys("broken/") == []


def test_delete_prefix_removes_objects_and_unfinished_uploads(store):
    store.write_stream("Lora/checkpoint/custom/1/a.safetensors", iter([b"a"]))
    store.write_stream("Lora/checkpoint/custom/1/b.yaml", iter([b"b"]))
    store.write_stream("Lora/checkpoint/custom/2/c.yaml", iter([b"c"]))
    store.multipart_start("Lora/checkpoint/custom/1/pending.safetensors")
    assert store.delete_prefix("Lora/checkpoint/custom/1/") == 2
    assert store.list_keys("Lora/checkpoint/custom/") == ["Lora/checkpoint/custom/2/c.yaml"]
    if isinstance(store, LocalStorage):
        assert not any(store.uploads.iterdir())
    else:
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        assert not [upload for upload in uploads if upload["Key"].startswith("Lora/checkpoint/custom/1/")]


def test_copy(store):
    store.write_stream("x/one.bin", iter([b"payload"]))
    store.copy("x/one.bin", "x/two.bin")
    assert store.read_range("x/two.bin", 0, 100) == b"payload"


@pytest.mark.parametrize(
    "key", ["../escape", "/abs", "a/../../b", "a//b", "a/./b", "a\\b", "a/.hidden", "", "a\x00b", "x" * 1100]
)
def test_keys_that_could_escape_are_refused(key):
    with pytest.raises(StorageError):
        check_key(key)


# --- the local store's signed URLs ----------------------------------------------------------------------------------


@pytest.fixture
def local(settings, tmp_path, live_server):
    settings.ESD_STORAGE = "local"
    settings.ESD_STORAGE_ROOT = tmp_path / "storage"
    settings.ESD_PUBLIC_URL = live_server.url
    from esd.storage import get_storage

    return get_storage()


def test_tampered_url_is_refused(local):
    url = local.presign_put("a/file.bin")
    status, _, body = http("PUT", url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"), b"x")
    assert status == 403
    assert b"bad signature" in body
    assert local.size("a/file.bin") is None


def test_expired_url_is_refused(local):
    url = local.presign_put("a/file.bin", expires=-1)
    status, _, body = http("PUT", url, b"x")
    assert status == 403
    assert b"expired" in body


def test_a_url_serves_only_its_purpose(local):
    local.write_stream("a/file.bin", iter([b"secret"]))
    get_url = local.presign_get("a/file.bin")
    assert http("PUT", get_url, b"overwrite")[0] == 403
    assert local.read_range("a/file.bin", 0, 100) == b"secret"
    put_url = local.presign_put("a/file.bin")
    assert http("GET", put_url)[0] == 403


def test_a_part_url_of_another_upload_is_refused(local):
    first = local.multipart_start("a/one.bin")
    local.multipart_start("a/two.bin")
    url = local.multipart_part_url("a/two.bin", first, 1)  # signed, but names another upload's key
    status, _, body = http("PUT", url, b"x")
    assert status == 400
    assert b"no such upload" in body


def test_a_part_url_after_completion_is_refused(local):
    upload_id = local.multipart_start("a/done.bin")
    url = local.multipart_part_url("a/done.bin", upload_id, 1)
    _, headers, _ = http("PUT", url, b"abc")
    local.multipart_complete("a/done.bin", upload_id, [(1, headers["ETag"])])
    assert http("PUT", url, b"replayed")[0] == 400
    assert local.read_range("a/done.bin", 0, 10) == b"abc"


def test_oversized_put_is_refused(local, settings):
    settings.ESD_MAX_CHECKPOINT_BYTES = 10
    status, _, _ = http("PUT", local.presign_put("a/big.bin"), b"x" * 11)
    assert status == 413
    assert local.size("a/big.bin") is None


def test_a_url_may_carry_its_own_size_limit(local, settings):
    # a job's payload URL takes at most ESD_MAX_PAYLOAD_BYTES, not a checkpoint's 20 GB, on the local store
    settings.ESD_MAX_CHECKPOINT_BYTES = 1000
    assert http("PUT", local.presign_put("a/small.bin", max_bytes=10), b"x" * 11)[0] == 413
    assert local.size("a/small.bin") is None
    assert http("PUT", local.presign_put("a/small.bin", max_bytes=10), b"x" * 10)[0] == 200
    assert http("PUT", local.presign_put("a/capped.bin", max_bytes=10**9), b"x" * 1001)[0] == 413  # never above


def test_signed_urls_expire_in_an_hour_by_default(local):
    claims = local.verify(local.presign_put("a/file.bin").rsplit("/", 1)[-1])
    assert 3590 <= claims["exp"] - time.time() <= 3600


def test_the_store_is_a_layer_over_its_django_storage_backend(store, settings):
    """django-storages' S3Storage or Django's FileSystemStorage holds the objects: what one writes the other reads."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import FileSystemStorage
    from storages.backends.s3 import S3Storage as S3Backend

    expected = S3Backend if settings.ESD_STORAGE == "s3" else FileSystemStorage
    assert isinstance(store.backend, expected)
    store.write_stream("layer/written.bin", iter([b"by the layer"]))
    assert store.backend.open("layer/written.bin", "rb").read() == b"by the layer"
    store.backend.save("layer/saved.bin", ContentFile(b"by the backend"))
    assert store.read_range("layer/saved.bin", 3, 7) == b"the bac"
    assert store.size("layer/saved.bin") == len(b"by the backend")
    store.delete("layer/saved.bin")
    assert not store.backend.exists("layer/saved.bin") and store.size("layer/saved.bin") is None


def test_settings_storages_default_is_the_backend_the_layer_uses(settings):
    """One description of the backend: Django's STORAGES["default"] and get_storage() agree."""
    from django.core.files.storage import storages

    from esd.storage import get_storage

    assert settings.ESD_STORAGE == "local"
    assert storages.create_storage(settings.STORAGES["default"]).location == get_storage().backend.location


def test_the_s3_client_retries_in_standard_mode(settings, moto_server):
    """botocore's "standard" retries (backoff on throttling and 5xx), which the store had before django-storages."""
    from tests.conftest import use_s3

    use_s3(settings, moto_server)
    from esd.storage import get_storage

    store = get_storage()
    assert store.client.meta.config.retries["mode"] == "standard"
    assert store.presigner.meta.config.s3["addressing_style"] == "path"
