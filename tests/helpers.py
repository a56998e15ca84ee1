"""Test helpers that build real files and run real servers on loopback."""

import base64
import io
import json
import socket
import struct
import tarfile
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def safetensors_bytes(tensors: dict[str, bytes] | None = None, metadata: dict[str, str] | None = None) -> bytes:
    """A valid safetensors file whose tensors are raw U8 vectors."""
    tensors = tensors if tensors is not None else {"weight": bytes(range(16))}
    header: dict[str, Any] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, data in tensors.items():
        header[name] = {"dtype": "U8", "shape": [len(data)], "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(tensors.values())


def tar_bytes(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


Route = Callable[[BaseHTTPRequestHandler], None]


class QuietServer(ThreadingHTTPServer):
    """Clients that hang up early (timeouts, refused downloads) are expected here, not worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class FileServer:
    """A real HTTP server on 127.0.0.1 whose routes a test sets: path -> handler(request)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        routes, hits = self.routes, self.hits

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                hits[path] = hits.get(path, 0) + 1
                route = routes.get(path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                route(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve_bytes(
        self, path: str, data: bytes, content_type: str = "application/octet-stream", **options: Any
    ) -> None:
        def route(request: BaseHTTPRequestHandler) -> None:
            declared = options.get("declared_length", len(data))
            request.send_response(options.get("status", 200))
            request.send_header("Content-Type", content_type)
            if declared is not None:
                request.send_header("Content-Length", str(declared))
            for name, value in options.get("headers", {}).items():
                request.send_header(name, value)
            request.end_headers()
            delay = options.get("delay", 0)
            for start in range(0, len(data), 65536):
                request.wfile.write(data[start : start + 65536])
                if delay:
                    request.wfile.flush()
                    time.sleep(delay)
            if options.get("close"):
                request.close_connection = True

        self.routes[path] = route

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        def route(request: BaseHTTPRequestHandler) -> None:
            request.send_response(status)
            request.send_header("Location", location)
            request.send_header("Content-Length", "0")
            request.end_headers()

        self.routes[path] = route

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def bomb_png(width: int, height: int) -> str:
    """A tiny base64 PNG whose header claims a huge image (decoding it would allocate width*height bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return base64.b64encode(raw).decode()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_sparse_safetensors(path: Path, size: int) -> Path:
    """A valid safetensors file of `size` bytes holding one zero-filled U8 tensor, written sparse: a multi-gigabyte
    checkpoint that costs no disk until it is copied."""

    def header(data: int) -> bytes:
        entry = {"dtype": "U8", "shape": [data], "data_offsets": [0, data]}
        return json.dumps({"__metadata__": {"format": "pt"}, "weight": entry}).encode()

    data = size
    for _ in range(3):  # the header holds the data's length, whose digits change the header's
        data = size - 8 - len(header(data))
    assert 8 + len(header(data)) + data == size
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(header(data))) + header(data))
        handle.truncate(size)
    return path


class RssSampler:
    """The largest resident set size of process `pid` (from /proc), sampled every `interval` s in a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.start = self.peak = self.read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def read(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, self.read())
            except OSError:
                return

    def stop(self) -> int:
        """The growth over the sampling, in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak - self.start


def put_file(url: str, path: Path, timeout: float = 600) -> tuple[int, Any, bytes]:
    """PUT a file's bytes to a URL, streamed from disk (http.client sends a file object in blocks). The headers
    come back as a case-insensitive message."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    with path.open("rb") as body:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("PUT", target, body=body, headers={"Content-Length": str(path.stat().st_size)})
        response = connection.getresponse()
        answer = response.status, response.msg, response.read()
    connection.close()
    return answer


def state_machine_settings() -> Any:
    """Hypothesis settings of the stateful tests: in `make test`, 60 fixed examples (derandomized: the same runs on
    every machine, no flakes); `ESD_STATE_MACHINE_EXAMPLES=500 ESD_STATE_MACHINE_RANDOM=1` searches further."""
    import os

    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=int(os.environ.get("ESD_STATE_MACHINE_EXAMPLES", "60")),
        stateful_step_count=30,
        deadline=None,
        derandomize=not os.environ.get("ESD_STATE_MACHINE_RANDOM"),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate the test database to `targets` (app, migration) and return the historical models' registry there
    (for data-migration tests: rows made the old way, read the new way)."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps
