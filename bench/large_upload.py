"""A real-sized checkpoint through every upload path of `make run`'s defaults: web memory and time.

    .venv/bin/python bench/large_upload.py [--gib 6]

esd_serve (SQLite, local store, waitress) on a scratch data folder; a sparse safetensors file of --gib GiB (a
valid header over zero-filled data) is uploaded (1) in one presigned PUT, as the README's recipe does, (2) in
three multipart parts, (3) through the admin's Checkpoints -> Add form, each followed by its completion. For each:
the seconds it took, the web process's resident memory growth (sampled every 50 ms from /proc), and the checkpoint's
status. Each checkpoint is deleted before the next path, so the disk holds one copy at a time (plus waitress's
buffered body while it arrives). Not a test: it prints.
"""

import argparse
import http.client
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scratch import MANAGE, Client, admin_token, embedded_deployment, free_port  # noqa: E402
from tests.helpers import RssSampler, put_file, write_sparse_safetensors  # noqa: E402

GIB = 1024**3
BLOCK = 1024 * 1024


def one_part(client: Client, model: Path) -> str:
    status, body = client.call("POST", "checkpoints", {
        "checkpoint_type": "Stable-diffusion", "filenames": [{"filename": model.name, "parts_number": 1}],
        "params": {"message": "one part"},
    })  # fmt: skip
    assert status == 201, body
    status, headers, answer = put_file(body["data"]["s3PresignUrl"][model.name][0], model)
    assert status == 200, answer
    return complete(client, body["data"]["checkpoint"]["id"], model.name, [headers["ETag"]])


def multipart(client: Client, model: Path, parts: int = 3) -> str:
    status, body = client.call("POST", "checkpoints", {
        "checkpoint_type": "Stable-diffusion", "filenames": [{"filename": model.name, "parts_number": parts}],
        "params": {"message": "multipart"},
    })  # fmt: skip
    assert status == 201, body
    size = model.stat().st_size
    part = -(-size // parts)
    etags = []
    for index, url in enumerate(body["data"]["s3PresignUrl"][model.name]):
        start = index * part
        etags.append(put_range(url, model, start, min(part, size - start)))
    return complete(client, body["data"]["checkpoint"]["id"], model.name, etags)


def put_range(url: str, path: Path, start: int, length: int) -> str:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=3600)
    connection.putrequest("PUT", parts.path + (f"?{parts.query}" if parts.query else ""))
    connection.putheader("Content-Length", str(length))
    connection.endheaders()
    with path.open("rb") as handle:
        handle.seek(start)
        left = length
        while left:
            block = handle.read(min(BLOCK, left))
            connection.send(block)
            left -= len(block)
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
    etag = response.getheader("ETag")
    connection.close()
    return etag


def complete(client: Client, checkpoint_id: str, name: str, etags: list[str]) -> str:
    tags = {name: [{"ETag": etag, "PartNumber": number} for number, etag in enumerate(etags, 1)]}
    status, body = client.call("PUT", f"checkpoints/{checkpoint_id}", {"status": "Active", "multi_parts_tags": tags})
    assert status == 200, body
    return checkpoint_id


def admin_form(base: str, password: str, model: Path) -> None:
    """Log in and post the add form, its file streamed from disk in a multipart body."""
    parts = urlsplit(base)
    cookies: dict[str, str] = {}

    def request(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=3600)
        sent = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), **(headers or {})}
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        for value in response.msg.get_all("Set-Cookie") or []:
            key, _, rest = value.partition("=")
            cookies[key] = rest.split(";", 1)[0]
        text = response.read().decode(errors="replace")
        connection.close()
        return response.status, text

    def csrf(path: str) -> str:
        status, page = request("GET", path)
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert found, f"GET {path} answered {status} without a form: {page[:300]}"
        return found.group(1)

    token = csrf("/admin/login/")
    form = f"csrfmiddlewaretoken={token}&username=admin&password={password}&next=/admin/".encode()
    status, _ = request("POST", "/admin/login/", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 302, status
    token = csrf("/admin/checkpoints/checkpoint/add/")
    boundary = uuid.uuid4().hex
    fields = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (("csrfmiddlewaretoken", token), ("type", "Stable-diffusion"), ("url", ""))
    )
    head = (
        fields
        + (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{model.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
    )
    tail = f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=3600)
    connection.putrequest("POST", "/admin/checkpoints/checkpoint/add/")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + model.stat().st_size + len(tail)))
    connection.putheader("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
    connection.putheader("Referer", base + "/admin/checkpoints/checkpoint/add/")
    connection.endheaders()
    connection.send(head)
    with model.open("rb") as handle:
        while block := handle.read(BLOCK):
            connection.send(block)
    connection.send(tail)
    response = connection.getresponse()
    response.read()
    assert response.status == 302, f"the add form answered {response.status}"
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=6.0)
    args = parser.parse_args()
    scratch = embedded_deployment("esd-upload")
    subprocess.run([*MANAGE, "collectstatic", "--noinput"], env=scratch.env, check=True, capture_output=True)  # admin
    model = write_sparse_safetensors(Path(tempfile.mkdtemp()) / "big-model.safetensors", int(args.gib * GIB))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*MANAGE, "esd_serve", "--port", str(port), "--no-workers"], env=scratch.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = Client(base + "/prod/", admin_token(scratch.env))
        while True:
            try:
                if client.call("GET", "ping")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        print(f"{args.gib:g} GiB sparse safetensors, esd_serve on make run's defaults (SQLite, local store)")
        print("| path | seconds | web RSS growth | status |")
        print("|---|---|---|---|")
        paths = (
            ("one presigned PUT (README)", lambda: one_part(client, model)),
            ("multipart, 3 parts", lambda: multipart(client, model)),
            ("admin Checkpoints -> Add", lambda: admin_form(base, "esd-upload-pw-1", model)),
        )
        for label, upload in paths:
            rss = RssSampler(server.pid)
            started = time.monotonic()
            upload()
            seconds = time.monotonic() - started
            growth = rss.stop()
            _, body = client.call("GET", "checkpoints")
            [listed] = [item for item in body["data"]["checkpoints"] if model.name in item["name"]]
            print(f"| {label} | {seconds:.1f} | {growth / 1024**2:.0f} MiB | {listed['status']} |", flush=True)
            client.call("DELETE", "checkpoints", {"checkpoint_id_list": [listed["id"]]})
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        model.unlink()
        scratch.drop()


if __name__ == "__main__":
    main()
