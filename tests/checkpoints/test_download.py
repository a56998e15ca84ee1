"""Checkpoints by URL: the SSRF guard, and the download job run by a real dramatiq worker against a real HTTP
server on loopback (slow, failing, redirecting, oversized and truncated responses)."""

import hashlib
import socket

import pytest

from checkpoints.models import Checkpoint
from esd import safe_http
from tests.conftest import wait_for
from tests.helpers import safetensors_bytes

SD = "Stable-diffusion"


def request_urls(esd, token, urls, type=SD):
    return esd.call("POST", "checkpoints", {"checkpoint_type": type, "urls": urls, "params": {"creator": "admin"}},
                    token=token)  # fmt: skip


def finished(name):
    def check():
        checkpoint = (
            Checkpoint.objects.filter(files__name=name).first()
            or Checkpoint.objects.filter(source_url__endswith=name).first()
        )
        return checkpoint if checkpoint and checkpoint.status not in ("Downloading",) else None

    return check


# --- the address guard --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1/x.safetensors", "loopback"),
        ("http://localhost/x.safetensors", "loopback"),
        ("http://[::1]/x.safetensors", "loopback"),
        ("http://[::ffff:127.0.0.1]/x.safetensors", "loopback"),
        ("http://2130706433/x.safetensors", "loopback"),  # decimal form of 127.0.0.1
        ("http://0177.0.0.1/x.safetensors", "loopback"),  # octal form
        ("http://0x7f.0.0.1/x.safetensors", "loopback"),  # hex form
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/x.safetensors", "link-local"),
        ("http://10.0.0.5/x.safetensors", "private"),
        ("http://192.168.1.10/x.safetensors", "private"),
        ("http://172.16.0.1/x.safetensors", "private"),
        ("http://[fd00::1]/x.safetensors", "private"),
        ("http://0.0.0.0/x.safetensors", "reserved"),
        ("http://224.0.0.1/x.safetensors", "multicast"),
        ("ftp://example.com/x.safetensors", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
        ("http://user:pw@example.com/x.safetensors", "user name or password"),
        ("http:///x.safetensors", "no host"),
    ],
)
def test_refused_addresses(settings, url, fragment):
    settings.ESD_DOWNLOAD_ALLOW_HOSTS = []
    with pytest.raises(safe_http.RequestRefused, match=fragment):
        safe_http.resolve_checked(url)


def test_a_dns_name_resolving_to_a_private_address_is_refused(settings, monkeypatch):
    settings.ESD_DOWNLOAD_ALLOW_HOSTS = []
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *args, **kwargs: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 80))]
    )
    with pytest.raises(safe_http.RequestRefused, match="private address"):
        safe_http.resolve_checked("http://models.example.com/x.safetensors")


def test_the_allow_list_admits_a_named_host(settings):
    settings.ESD_DOWNLOAD_ALLOW_HOSTS = ["127.0.0.1"]
    assert safe_http.resolve_checked("http://127.0.0.1:9/x.safetensors")[3] == "127.0.0.1"


def test_refused_urls_are_a_400_at_request_time(esd, admin_token, settings):
    settings.ESD_DOWNLOAD_ALLOW_HOSTS = []
    response = request_urls(esd, admin_token, ["http://169.254.169.254/latest/meta-data/x.safetensors"])
    assert response.status == 400
    assert "link-local" in response.body["message"]
    assert not Checkpoint.objects.exists()


# --- the download job, through a real worker ----------------------------------------------------------------------


def test_download_becomes_active_with_sha256_and_progress(esd, admin_token, allow_loopback, file_server,
                                                          dramatiq_worker, store):  # fmt: skip
    data = safetensors_bytes({"w": b"\x07" * 3_000_000})
    file_server.serve_bytes("/files/model.safetensors", data)
    response = request_urls(esd, admin_token, [file_server.url("/files/model.safetensors")] * 2)
    assert response.body == {"statusCode": 202, "message": "Checkpoint creation in progress, please check later"}
    assert Checkpoint.objects.count() == 1  # duplicate URLs are one checkpoint
    checkpoint = wait_for(finished("model.safetensors"))
    assert checkpoint.status == "Active", checkpoint.error
    file = checkpoint.files.get()
    assert (file.sha256, file.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert (checkpoint.bytes_done, checkpoint.bytes_total) == (len(data), len(data))
    assert store.read_range(file.key, 0, 16) == data[:16]
    again = request_urls(esd, admin_token, [file_server.url("/files/model.safetensors")])
    assert "already exists" in again.body["message"]


def test_progress_written_late_never_changes_a_finished_row(transactional_db, admin_user, monkeypatch):
    """The race CI once saw: a checkpoint Active with bytes_done 0. The progress thread is a tick behind the run;
    its write must not land on a row the run has finished, and the finished row carries its final figures."""
    from checkpoints import execution

    monkeypatch.setattr(execution, "PROGRESS_INTERVAL", 0.01)
    row = Checkpoint.objects.create(type=SD, status="Downloading", created_by=admin_user, source_url="https://x/m")
    progress = execution.Progress(row.pk)
    try:
        progress.done = 1234
        assert wait_for(lambda: Checkpoint.objects.get(pk=row.pk).bytes_done == 1234, timeout=5)
        Checkpoint.objects.filter(pk=row.pk).update(status="Active", bytes_done=5000, bytes_total=5000)
        progress.done = 0  # a stale figure, as the thread may hold one
        ticks = 0

        def ticked() -> bool:
            nonlocal ticks
            ticks += 1
            return ticks > 20

        wait_for(ticked, timeout=5, interval=0.01)  # ~20 progress ticks go by
        assert Checkpoint.objects.get(pk=row.pk).bytes_done == 5000
    finally:
        progress.finish()
    finished_row = Checkpoint.objects.get(pk=row.pk)
    assert (finished_row.status, finished_row.bytes_done, finished_row.download_lease_until) == ("Active", 5000, None)


def test_civitai_style_urls_take_the_name_of_their_redirect(esd, admin_token, allow_loopback, file_server,
                                                            dramatiq_worker, store):  # fmt: skip
    data = safetensors_bytes()
    file_server.serve_bytes("/files/realName_v2.safetensors", data)
    file_server.redirect("/api/download/models/4201", file_server.url("/files/realName_v2.safetensors"), status=307)
    request_urls(esd, admin_token, [file_server.url("/api/download/models/4201")])
    checkpoint = wait_for(finished("realName_v2.safetensors"))
    assert checkpoint.status == "Active", checkpoint.error
    assert checkpoint.names == ["realName_v2.safetensors"]


def test_hugging_face_resolve_urls_are_named_by_their_file(esd, admin_token, allow_loopback, file_server,
                                                           dramatiq_worker, store):  # fmt: skip
    file_server.serve_bytes("/cdn/blob", safetensors_bytes())
    file_server.redirect("/org/repo/resolve/main/sd_tiny.safetensors", file_server.url("/cdn/blob"))
    request_urls(esd, admin_token, [file_server.url("/org/repo/resolve/main/sd_tiny.safetensors")])
    checkpoint = wait_for(finished("sd_tiny.safetensors"))
    assert checkpoint.status == "Active", checkpoint.error


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (lambda server: None, "HTTP 404"),
        (lambda server: server.serve_bytes("/x.safetensors", b"<html>login</html>", "text/html"), "HTML page"),
        (lambda server: server.serve_bytes("/x.safetensors", b"\x80\x04 not a model"), "pickled"),
        (lambda server: server.serve_bytes("/x.safetensors", safetensors_bytes()[:-4]), "truncated"),
        (lambda server: server.serve_bytes("/x.safetensors", b"0" * 5000), "larger than"),
        (lambda server: server.serve_bytes("/x.safetensors", b"0" * 5000, declared_length=None, close=True),
         "larger than"),
        (lambda server: server.serve_bytes("/x.safetensors", b"0" * 100, status=500), "HTTP 500"),
        (lambda server: server.serve_bytes("/x.safetensors", b"0" * 100, declared_length=1000, close=True),
         "attempts"),
    ],
)  # fmt: skip
def test_failures_leave_a_failed_checkpoint_with_the_reason(esd, admin_token, allow_loopback, fast_retries,
                                                            file_server, dramatiq_worker, store, setup, fragment):  # fmt: skip
    fast_retries.ESD_MAX_CHECKPOINT_BYTES = 4096
    setup(file_server)
    assert request_urls(esd, admin_token, [file_server.url("/x.safetensors")]).status == 202
    checkpoint = wait_for(finished("x.safetensors"))
    assert checkpoint.status == "Failed"
    assert fragment in checkpoint.error
    assert store.list_keys(checkpoint.folder + "/") == []  # no partial object
    listed = esd.call("GET", "checkpoints", token=admin_token, query={"status": "Active"}).body["data"]
    assert listed["total"] == 0  # ESD clients, which ask for Active, never see it


def test_a_transient_error_is_retried(esd, admin_token, allow_loopback, fast_retries, file_server,
                                      dramatiq_worker, store):  # fmt: skip
    data = safetensors_bytes()
    calls = {"n": 0}

    def flaky(request):
        calls["n"] += 1
        if calls["n"] == 1:
            request.send_response(503)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        request.send_response(200)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    file_server.routes["/flaky.safetensors"] = flaky
    request_urls(esd, admin_token, [file_server.url("/flaky.safetensors")])
    checkpoint = wait_for(finished("flaky.safetensors"))
    assert checkpoint.status == "Active", checkpoint.error
    assert calls["n"] == 2


def test_a_stalled_download_times_out(esd, admin_token, allow_loopback, fast_retries, file_server,
                                      dramatiq_worker, store):  # fmt: skip
    fast_retries.ESD_DOWNLOAD_TIMEOUT = 0.3
    fast_retries.ESD_DOWNLOAD_RETRIES = 0
    file_server.serve_bytes("/slow.safetensors", b"0" * 200_000, delay=1.0)
    request_urls(esd, admin_token, [file_server.url("/slow.safetensors")])
    checkpoint = wait_for(finished("slow.safetensors"))
    assert checkpoint.status == "Failed", (checkpoint.status, checkpoint.error)
    assert "timed out" in checkpoint.error.lower(), checkpoint.error


def test_a_redirect_to_a_private_address_is_refused(esd, admin_token, settings, file_server, dramatiq_worker, store):
    # "localhost" is allowed (the test server), but the redirect leads to another loopback address that is not.
    settings.ESD_DOWNLOAD_ALLOW_HOSTS = ["localhost"]
    file_server.serve_bytes("/secret.safetensors", safetensors_bytes())
    file_server.redirect("/go.safetensors", f"http://127.0.0.2:{file_server.port}/secret.safetensors")
    request_urls(esd, admin_token, [f"http://localhost:{file_server.port}/go.safetensors"])
    checkpoint = wait_for(finished("go.safetensors"))
    assert checkpoint.status == "Failed"
    assert "loopback" in checkpoint.error
    assert file_server.hits.get("/secret.safetensors") is None


def test_a_redelivered_message_does_nothing_twice(
    esd, admin_token, allow_loopback, file_server, dramatiq_worker, store
):
    from checkpoints import execution

    file_server.serve_bytes("/once.safetensors", safetensors_bytes())
    request_urls(esd, admin_token, [file_server.url("/once.safetensors")])
    checkpoint = wait_for(finished("once.safetensors"))
    execution.checkpoint_download_run(checkpoint_id=str(checkpoint.pk))
    assert file_server.hits["/once.safetensors"] == 1


def test_a_running_download_holds_a_lease_a_second_run_cannot_take(
    esd, admin_token, allow_loopback, file_server, transactional_db
):
    from datetime import timedelta

    from django.utils import timezone

    from checkpoints import execution
    from checkpoints.actors import _busy

    file_server.serve_bytes("/leased.safetensors", safetensors_bytes())
    request_urls(esd, admin_token, [file_server.url("/leased.safetensors")])  # no worker: stays Downloading
    checkpoint = Checkpoint.objects.get(source_url__endswith="leased.safetensors")
    assert execution.take_download(checkpoint.pk) is True
    assert execution.take_download(checkpoint.pk) is False  # a redelivered or re-sent message while it runs
    with pytest.raises(execution.DownloadBusy):  # the actor retries it after a lease's length
        execution.checkpoint_download_run(checkpoint_id=str(checkpoint.pk))
    assert file_server.hits.get("/leased.safetensors") is None
    assert Checkpoint.objects.get(pk=checkpoint.pk).status == "Downloading"
    past = timezone.now() - timedelta(seconds=1)
    Checkpoint.objects.filter(pk=checkpoint.pk).update(download_lease_until=past)  # its run died
    assert execution.take_download(checkpoint.pk) is True
    busy = execution.DownloadBusy("held")
    assert [_busy(retries, busy) for retries in range(4)] == [True, True, True, False]
    assert _busy(0, RuntimeError("anything else")) is False


def test_downloads_a_restarted_redis_lost_are_sent_again_by_the_sweep(
    esd, admin_token, allow_loopback, file_server, use_broker, transactional_db
):
    import dramatiq

    from checkpoints import services
    from tests.conftest import redis_broker, stop_worker

    broker = use_broker(redis_broker())
    broker.client.flushdb()
    file_server.serve_bytes("/lost.safetensors", safetensors_bytes())
    assert request_urls(esd, admin_token, [file_server.url("/lost.safetensors")]).status == 202
    assert services.checkpoint_requeue_lost_downloads(older_than=0.0) == 0  # its message is waiting: not lost
    broker.client.flushdb()  # Redis restarts without persistence
    assert services.checkpoint_requeue_lost_downloads(older_than=0.0) == 1
    assert services.checkpoint_requeue_lost_downloads(older_than=0.0) == 0  # sent once
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        checkpoint = wait_for(finished("lost.safetensors"))
    finally:
        stop_worker(worker)
    assert checkpoint.status == "Active", checkpoint.error
    assert file_server.hits["/lost.safetensors"] == 1
