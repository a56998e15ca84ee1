"""Run workers for one endpoint: `python manage.py serve_endpoint NAME [--device cuda:0|cpu] [--processes N]`."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import dramatiq
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from dramatiq.brokers.stub import StubBroker

from endpoints.models import Endpoint, EndpointStatus
from endpoints.runtime import EndpointWorker
from esd.shutdown import drain
from esd.signals import recover_waiting_work, worker_checking


def check_device(device: str) -> str:
    if device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise CommandError(f"--device must be cpu, cuda or cuda:N, not {device!r}")


class Command(BaseCommand):
    help = (
        "Serve endpoint NAME: consume its queue (one message at a time per process), register, heartbeat, and exit "
        "cleanly on SIGTERM (finishing the message in hand) or when the endpoint is deleted. Needs ESD_BROKER_URL."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="The endpoint's full name, e.g. esd-async-api-test.")
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu).")
        parser.add_argument(
            "--processes", type=int, default=1, help="Worker processes (with --device cuda, one per GPU: cuda:0..)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        device = check_device(options["device"])
        try:
            worker_checking.send(sender=self.__class__, device=device)
        except ImproperlyConfigured as exc:  # a worker that could only fail its jobs does not start
            raise CommandError(str(exc)) from exc
        name = options["name"]
        endpoint = Endpoint.objects.exclude(status=EndpointStatus.DELETING).filter(name=name).first()
        if endpoint is None:
            raise CommandError(
                f"no endpoint named {name!r}: create it first (POST /endpoints or the admin); full names look like "
                "esd-async-NAME or esd-real-time-NAME"
            )
        if isinstance(dramatiq.get_broker(), StubBroker):
            raise CommandError(
                "serve_endpoint needs a shared broker: set ESD_BROKER_URL to redis://... or amqp://... "
                "(the in-process broker only works inside esd_serve)"
            )
        processes = options["processes"]
        if processes < 1:
            raise CommandError("--processes must be at least 1")
        if processes > 1:
            sys.exit(self._supervise(name, device, processes))
        self._serve(endpoint, device)

    def _supervise(self, name: str, device: str, processes: int) -> int:
        """Run one child process per worker; pass SIGTERM/SIGINT on and wait for all of them."""
        manage = Path(__file__).resolve().parents[3] / "manage.py"
        children: list[subprocess.Popen[bytes]] = []

        def forward(signum: int, frame: Any) -> None:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        env = dict(os.environ)
        if device == "cpu" and "ESD_TORCH_THREADS" not in env:
            # CPU workers on one host share its cores; each taking all of them makes every job many times slower
            env["ESD_TORCH_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
        for index in range(processes):
            child_device = f"cuda:{index}" if device == "cuda" else device
            command = [sys.executable, str(manage), "serve_endpoint", name, "--device", child_device]
            children.append(subprocess.Popen(command, env=env))  # noqa: S603 (our own command line)
        return max(child.wait() for child in children)

    def _serve(self, endpoint: Endpoint, device: str) -> None:
        # Handlers first: a SIGTERM that arrives while the worker registers must still mean "drain", not "die".
        stop_requested, hurry = threading.Event(), threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            # the first asks for a drain within ESD_SHUTDOWN_GRACE; a second stops the running jobs now
            (hurry if stop_requested.is_set() else stop_requested).set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        recover_waiting_work.send(sender=self.__class__, queues={endpoint.queue_name})
        worker = EndpointWorker(endpoint, device=device)
        worker.start()
        self.stdout.write(f"Serving {endpoint.name} on {device} (worker {worker.record.pk if worker.record else '?'})")
        # Until asked to stop, or until the worker drains by itself (its endpoint was deleted).
        while not stop_requested.wait(0.5) and not worker.stopped.is_set():
            pass

        def say(text: str) -> None:
            self.stdout.write(text)
            self.stdout.flush()

        drain(worker.stop, worker.running_jobs, hurry, say)
        self.stdout.write(f"Worker of {endpoint.name} stopped.")
