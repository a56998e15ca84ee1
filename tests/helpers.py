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
