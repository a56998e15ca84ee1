"""Import by URL of a large file served from loopback: throughput against curl, and the worker's memory.

    .venv/bin/python bench/import_by_url.py [--size-mib 1024] [--runs 3]

Serves one safetensors file of --size-mib from a local HTTP server, then, in the same run, alternately:
curl writing the URL to a file, the checkpoint download job into the local store, and the same job into an
S3-compatible server (moto, in its own process). Prints medians, the ratio to curl, and the peak RSS growth of the
process running the job. Not a test: the figures go in docs/benchmarks.md.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def make_file(path: Path, size: int) -> None:
    """A valid safetensors file of `size` bytes: one U8 tensor of zeros, written sparse."""
    data = size
    for _ in range(3):  # the header's length depends on the digits of the data size; this settles at once
        header = json.dumps({"w": {"dtype": "U8", "shape": [data], "data_offsets": [0, data]}}).encode()
        data = size - 8 - len(header)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header)
        handle.truncate(size)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PeakRss:
    """Samples the process's resident memory every 5 ms while a job runs; `growth` is peak minus start."""

    def __init__(self) -> None:
        self.start = rss_mib()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mib())

    def growth(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak - self.start


def rss_mib() -> float:
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MiB

    work = Path(tempfile.mkdtemp(prefix="esd-bench-"))
    served = work / "served"
    served.mkdir()
    make_file(served / "big.safetensors", size)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/big.safetensors"

    moto_port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ.update(
        DJANGO_SETTINGS_MODULE="esd.settings",
        DJANGO_SECRET_KEY="bench-only-import-by-url-key",
        ESD_DATA_DIR=str(work / "data"),
        ESD_DOWNLOAD_ALLOW_HOSTS="127.0.0.1",
        ESD_MAX_CHECKPOINT_BYTES=str(size * 2),
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from accounts import services as account_services
    from checkpoints import execution, services
    from checkpoints.models import Checkpoint
    from esd.storage import get_storage

    call_command("migrate", verbosity=0)
    admin = account_services.admin_ensure(username="bench", password="bench-password-1")
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", moto_port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)

    def use(store: str) -> None:
        settings.ESD_STORAGE = store
        if store == "s3":
            settings.AWS_S3_ENDPOINT_URL = settings.ESD_S3_PUBLIC_ENDPOINT_URL = f"http://127.0.0.1:{moto_port}"
            settings.AWS_ACCESS_KEY_ID = settings.AWS_SECRET_ACCESS_KEY = "bench"
            get_storage().ensure_bucket()

    def curl() -> float:
        target = work / "curl.out"
        start = time.perf_counter()
        subprocess.run(["curl", "-sS", "-o", str(target), url], check=True)
        elapsed = time.perf_counter() - start
        target.unlink()
        return elapsed

    def job(store: str) -> tuple[float, float]:
        use(store)
        [checkpoint] = services.checkpoint_create_from_urls(actor=admin, type="Lora", urls=[url], params={})
        memory = PeakRss()
        start = time.perf_counter()
        execution.checkpoint_download_run(checkpoint_id=str(checkpoint.pk))
        elapsed = time.perf_counter() - start
        grown = memory.growth()
        checkpoint.refresh_from_db()
        assert checkpoint.status == "Active", checkpoint.error
        services.checkpoint_delete_many(actor=admin, checkpoints=[Checkpoint.objects.get(pk=checkpoint.pk)])
        return elapsed, max(0.0, grown)

    def s3_ceiling() -> float:
        """boto3 uploading the same file from disk to the same S3 server: the store's own limit."""
        use("s3")
        storage = get_storage()
        start = time.perf_counter()
        storage.client.upload_file(str(served / "big.safetensors"), storage.bucket, "ceiling/big.safetensors")
        elapsed = time.perf_counter() - start
        storage.delete("ceiling/big.safetensors")
        return elapsed

    timings: dict[str, list[float]] = {"curl": [], "local": [], "s3": [], "s3-ceiling": []}
    growth: dict[str, float] = {"local": 0.0, "s3": 0.0}
    try:
        for _ in range(args.runs):
            timings["curl"].append(curl())
            timings["s3-ceiling"].append(s3_ceiling())
            for store in ("local", "s3"):
                elapsed, grown = job(store)
                timings[store].append(elapsed)
                growth[store] = max(growth[store], grown)
    finally:
        moto.terminate()
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    print(f"file: {args.size_mib} MiB from loopback, {args.runs} runs, medians")
    curl_median = statistics.median(timings["curl"])
    print(f"  curl -> file       {args.size_mib / curl_median:8.0f} MiB/s  ({curl_median:.2f} s)")
    ceiling = statistics.median(timings["s3-ceiling"])
    print(f"  boto3 file -> s3   {args.size_mib / ceiling:8.0f} MiB/s  ({ceiling:.2f} s)  (the S3 server's own limit)")
    for store in ("local", "s3"):
        median = statistics.median(timings[store])
        print(
            f"  import -> {store:<6}   {args.size_mib / median:8.0f} MiB/s  ({median:.2f} s)  "
            f"ratio to curl {curl_median / median:.2f}  peak RSS growth {growth[store]:.0f} MiB"
            + (f"  ratio to the S3 server's limit {ceiling / median:.2f}" if store == "s3" else "")
        )


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    main()
