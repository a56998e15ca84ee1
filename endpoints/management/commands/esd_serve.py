"""The embedded all-in-one server behind `make run`: the web app and API on waitress (a production-grade threaded
WSGI server) plus, on the in-process broker, worker threads for every endpoint and for checkpoint downloads.

On start it re-enqueues what the database says is waiting (esd.signals.recover_waiting_work), so a restart loses
nothing; on SIGTERM or Ctrl-C the web part keeps answering while the workers finish the jobs in hand within
ESD_SHUTDOWN_GRACE, after which (or at a second Ctrl-C) those jobs stop at their next step and go back to the queue
(esd.shutdown).
"""

import contextlib
import errno
import logging
import os
import signal
import tempfile
import threading
from typing import Any

import dramatiq
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from waitress.server import create_server  # type: ignore[import-untyped]

from endpoints.models import Endpoint, EndpointStatus
from endpoints.runtime import EndpointWorker, detach, load_actors, start_time_limits
from esd.shutdown import drain
from esd.signals import recover_waiting_work
from esd.wsgi import application

logger = logging.getLogger(__name__)

SUPERVISE_SECONDS = 2.0
DOWNLOAD_QUEUE = "downloads"
BACKGROUND_QUEUES = {DOWNLOAD_QUEUE, "webhooks"}  # checkpoint downloads and job webhooks


class Supervisor:
    """Keeps one worker thread per live endpoint, and the download workers, running in this process."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.workers: dict[str, EndpointWorker] = {}
        self.downloads: dramatiq.Worker | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="esd-supervisor", daemon=True)

    def start(self) -> None:
        load_actors()
        broker = dramatiq.get_broker()
        for queue in BACKGROUND_QUEUES:
            broker.declare_queue(queue)
        self.downloads = dramatiq.Worker(broker, queues=BACKGROUND_QUEUES, worker_threads=2, worker_timeout=100)
        start_time_limits(broker)  # downloads' own limit, as the endpoints'
        self.downloads.start()
        self.sync()
        self.thread.start()

    def sync(self) -> None:
        """Start workers for new endpoints; forget those that drained (deleted endpoints)."""
        for key in [key for key, worker in self.workers.items() if worker.stopped.is_set()]:
            del self.workers[key]
        for endpoint in Endpoint.objects.exclude(status=EndpointStatus.DELETING):
            if str(endpoint.pk) not in self.workers:
                worker = EndpointWorker(endpoint, device=self.device)
                worker.start()
                self.workers[str(endpoint.pk)] = worker

    def _run(self) -> None:
        while not self.stopping.wait(SUPERVISE_SECONDS):
            try:
                self.sync()
            except Exception:  # a database hiccup: try again at the next round
                logger.exception("esd_serve could not sync its endpoint workers")

    def running_jobs(self) -> list[str]:
        return [f"{job} on {worker.endpoint.name}" for worker in self.workers.values() for job in worker.running_jobs()]

    def stop(self) -> None:
        self.stopping.set()
        for worker in list(self.workers.values()):
            worker.stop()
        if self.downloads is not None:
            self.downloads.stop()
            detach(self.downloads)


class Command(BaseCommand):
    help = "Serve the admin, the ESD API and in-process workers (embedded set-up: SQLite, local storage)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--threads", type=int, default=8, help="Request threads.")
        parser.add_argument("--no-workers", action="store_true", help="Serve the web app only.")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        if "ESD_PUBLIC_URL" not in os.environ:
            # The local store's signed URLs must point at this very server unless told otherwise.
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 (a comparison, not a bind)
            settings.ESD_PUBLIC_URL = f"http://{shown}:{port}"
        # waitress buffers each request body in a temporary file before a thread sees it: a checkpoint's upload
        # goes to the data folder's upload folder rather than /tmp (often a small tmpfs), and may be as large as
        # a checkpoint (waitress's own cap is 1 GiB; a form's fields and boundaries come on top of the file).
        tempfile.tempdir = settings.FILE_UPLOAD_TEMP_DIR
        try:
            server = create_server(
                application,
                host=host,
                port=port,
                threads=options["threads"],
                ident="esd-server",
                # Idle or slow clients must not hold the server: waitress stops accepting at connection_limit (100 by
                # default: 110 half-sent requests stopped every other client), so the limit is high, select()'s 1024
                # file-descriptor ceiling is avoided with poll(), and a connection silent for channel_timeout seconds is
                # closed by a sweep that runs often enough to honour it. Request bodies are buffered by waitress before a
                # thread sees them, so a slow body costs a connection slot, never a request thread.
                connection_limit=settings.ESD_SERVE_CONNECTION_LIMIT,
                channel_timeout=settings.ESD_SERVE_CHANNEL_TIMEOUT,
                cleanup_interval=max(1, min(30, settings.ESD_SERVE_CHANNEL_TIMEOUT // 3)),
                asyncore_use_poll=True,
                max_request_body_size=settings.ESD_MAX_CHECKPOINT_BYTES + 64 * 1024**2,
            )
        except OSError as exc:
            # a busy port is the common first-run stumble: one line saying what to do, not a traceback
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"port {port} on {host} is already in use (another ESD server, or another program): stop it, or "
                    f"serve on another port: make run PORT={port + 1} (esd_serve --port {port + 1})"
                ) from exc
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        supervisor = None
        if not options["no_workers"]:
            recover_waiting_work.send(sender=self.__class__, queues=None)
            supervisor = Supervisor(settings.ESD_SERVE_DEVICE)
            supervisor.start()

        stopping, hurry = threading.Event(), threading.Event()

        def say(text: str) -> None:
            self.stdout.write(text)
            self.stdout.flush()

        def shut_down() -> None:
            # the web part answers until the workers have let go: people can still look, and cancel
            if supervisor is not None:
                drain(supervisor.stop, supervisor.running_jobs, hurry, say)
            server.close()

        def on_signal(signum: int, frame: Any) -> None:
            if stopping.is_set():
                hurry.set()  # a second Ctrl-C: stop the running jobs now (they go back to the queue)
                return
            stopping.set()
            threading.Thread(target=shut_down, name="esd-shutdown", daemon=True).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.stdout.write(
            f"ESD server on http://{host}:{port}/  (admin: /admin/, API: /{settings.ESD_API_PREFIX}, "
            f"docs: /{settings.ESD_API_PREFIX}docs)",
        )
        self.stdout.flush()
        with contextlib.suppress(OSError):  # the listening socket was closed by shut_down
            server.run()
        self.stdout.write("ESD server stopped; its endpoints' workers are Stopped until it starts again.")
        if supervisor is not None:
            # Everything is written and let go. The interpreter's own teardown of torch and the models it held takes
            # seconds (2 s idle, 4 s on a busy 2-core machine) and saves nothing: end here, so that a stop takes the
            # grace and a job's last step (esd.shutdown), not that as well.
            self.stdout.flush()
            connections.close_all()
            logging.shutdown()
            os._exit(0)
