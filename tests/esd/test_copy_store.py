"""Moving `make run`'s data to S3 (issue 29.10): esd_copy_store copies a local store's objects into the configured
store (moto's S3 server here), leaves unfinished uploads out, and skips what is there already when run again."""

import io

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import use_s3


def test_a_local_store_is_copied_to_s3_and_a_second_run_skips_it(settings, tmp_path, moto_server):
    root = tmp_path / "storage"
    objects = {
        "Stable-diffusion/checkpoint/custom/1234/model.safetensors": b"\0" * (9 * 1024 * 1024 + 5),  # > one chunk
        "txt2img/infer_v2/abcd/api_param.json": b'{"prompt": "a cat"}',
        "out/abcd/result/image_0.png": b"\x89PNG not really",
    }
    for key, data in objects.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    (root / ".multipart" / "up1").mkdir(parents=True)
    (root / ".multipart" / "up1" / "00001").write_bytes(b"half an upload")
    (root / "out" / "abcd" / "result" / ".incoming-x").write_bytes(b"being written")
    use_s3(settings, moto_server)
    out = io.StringIO()
    call_command("esd_copy_store", str(root), stdout=out)
    assert "Copied 3 object(s) (9.0 MiB) to s3://esd-test/; 0 were there already." in out.getvalue()
    from esd.storage import get_storage

    storage = get_storage()
    assert sorted(storage.list_keys("")) == sorted(objects)
    for key, data in objects.items():
        with storage.open(key) as handle:
            assert handle.read() == data
    again = io.StringIO()
    call_command("esd_copy_store", str(root), stdout=again)
    assert "Copied 0 object(s) (0 bytes)" in again.getvalue() and "3 were there already" in again.getvalue()
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("esd_copy_store", str(tmp_path / "nowhere"))
