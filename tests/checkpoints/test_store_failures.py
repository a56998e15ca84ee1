"""The store fails under an upload: a full disk (a real 2 MiB tmpfs mounted as the local store) and an S3 server
that goes away mid-download (moto's server, stopped and started again on its port). Each time the checkpoint
ends Failed with a reason a person can act on, and no object or partial file is left behind.
"""

import json
import shutil
import time

import pytest
from moto.server import ThreadedMotoServer

from checkpoints.models import Checkpoint
from tests.conftest import use_s3, wait_for
from tests.esd.test_storage import http
from tests.helpers import free_port, safetensors_bytes

from .test_api import start_upload
from .test_download import finished, request_urls

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmpfs, settings, live_server):
    """A 2 MiB filesystem as the local store's root."""
    mount = tmpfs("2m")
    settings.ESD_STORAGE = "local"
    settings.ESD_STORAGE_ROOT = mount
    settings.ESD_PUBLIC_URL = live_server.url
    return mount


def files_under(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_a_download_that_fills_the_disk_fails_with_the_reason_and_leaves_nothing(
    esd, admin_token, allow_loopback, fast_retries, file_server, dramatiq_worker, small_disk
):
    file_server.serve_bytes("/big.safetensors", b"\0" * (4 * MiB))
    assert request_urls(esd, admin_token, [file_server.url("/big.safetensors")]).status == 202
    checkpoint = wait_for(finished("big.safetensors"))
    assert checkpoint.status == "Failed"
    assert "the store has no room" in checkpoint.error and "No space left on device" in checkpoint.error
    assert files_under(small_disk) == []  # no object, no `.incoming-` file
    assert shutil.disk_usage(small_disk).used < 64 * 1024  # the space came back
    # once there is room, the same file downloads fine: nothing was left half-done
    file_server.serve_bytes("/small.safetensors", safetensors_bytes())
    request_urls(esd, admin_token, [file_server.url("/small.safetensors")])
    assert wait_for(finished("small.safetensors")).status == "Active"


def test_a_presigned_upload_to_a_full_disk_is_a_507_and_leaves_nothing(esd, admin_token, small_disk):
    started = start_upload(esd, admin_token, [("model.safetensors", 1)])
    assert started.status == 201, started.body
    [url] = started.body["data"]["s3PresignUrl"]["model.safetensors"]
    status, _, body = http("PUT", url, b"\1" * (3 * MiB))
    assert status == 507
    message = json.loads(body)["message"]
    # checked before a byte is written, from Content-Length and the disk's free space
    assert message.startswith("the store has no room for ") and "it is 3.0 MiB and " in message
    assert "free space on " in message
    assert files_under(small_disk) == []  # no part, no `.incoming-` file, and the upload's record is gone too
    # issue 29.1: the checkpoint fails at once with the reason, rather than wait in Initial for a completion
    checkpoint = Checkpoint.objects.get(pk=started.body["data"]["checkpoint"]["id"])
    assert checkpoint.status == "Failed" and "the upload of model.safetensors was refused: " in checkpoint.error
    assert http("PUT", url, b"\1" * 1024)[0] == 400  # its upload was aborted


@pytest.fixture
def restartable_s3(settings):
    """An S3 server of this test's own: stop() and start() keep its objects (moto keeps them in this process)."""
    port = free_port()
    servers = [ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)]
    servers[0].start()

    class Control:
        endpoint = f"http://127.0.0.1:{port}"

        def stop(self) -> None:
            servers[-1].stop()

        def start(self) -> None:
            servers.append(ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False))
            servers[-1].start()

    use_s3(settings, Control.endpoint)
    yield Control()
    servers[-1].stop()


def test_an_s3_store_that_goes_away_mid_download_fails_it_with_the_reason(
    esd, admin_token, allow_loopback, fast_retries, file_server, dramatiq_worker, restartable_s3
):
    from esd.storage import get_storage

    # 48 MiB, 64 KiB every 5 ms: ~4 s, long enough to stop the store while parts are being uploaded
    file_server.serve_bytes("/stream.safetensors", b"\0" * (48 * MiB), delay=0.005)
    assert request_urls(esd, admin_token, [file_server.url("/stream.safetensors")]).status == 202
    wait_for(lambda: Checkpoint.objects.filter(bytes_done__gt=20 * MiB).exists(), timeout=60)
    restartable_s3.stop()
    checkpoint = wait_for(finished("stream.safetensors"), timeout=120)
    assert checkpoint.status == "Failed"
    assert "the object store is unavailable" in checkpoint.error
    time.sleep(0.5)
    restartable_s3.start()
    storage = get_storage()
    assert storage.list_keys(checkpoint.folder + "/") == []  # no object, partial or whole
    # the multipart upload the store could not abort while it was down goes with the checkpoint
    deleted = esd.call("DELETE", "checkpoints", {"checkpoint_id_list": [str(checkpoint.pk)]}, token=admin_token)
    assert deleted.status == 204
    uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=checkpoint.folder + "/")
    assert uploads.get("Uploads", []) == []
