"""Running workers for an endpoint: a dramatiq Worker on the endpoint's queue, registered and heartbeating.

Used by `serve_endpoint` (one per process, one thread per GPU) and by `esd_serve` (one thread per endpoint).
GPU work takes one message at a time: prefetch equals the thread count, so a busy worker never hoards messages an
idle one could run. Idle workers look at their queue every ESD_WORKER_POLL_MS (dramatiq's Redis consumer would
otherwise back off to its worker timeout, up to a second of pickup delay).
"""

import logging
import os
import socket
import threading
import time
from typing import Any

import dramatiq
from django.conf import settings
from django.db import close_old_connections
from django.utils.module_loading import autodiscover_modules
from dramatiq.middleware import Middleware, TimeLimit

from esd.leases import Heartbeat
from esd.signals import recover_waiting_work, worker_draining, worker_starting

from . import services
from .models import Endpoint, Worker

logger = logging.getLogger(__name__)


class _SeveralWorkersPerBroker(logging.Filter):
    """esd_serve runs one dramatiq Worker (and one CurrentJob middleware) per endpoint on one broker, by design;
    dramatiq warns about every second middleware of a type, which here is expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "of the same type twice" not in record.getMessage()


for _name in ("dramatiq.broker.StubBroker", "dramatiq.broker.RedisBroker", "dramatiq.broker.RabbitmqBroker"):
    logging.getLogger(_name).addFilter(_SeveralWorkersPerBroker())


class CurrentJob(Middleware):
    """Remembers which message of `queues` each worker thread is processing, for the heartbeat (and the admin)."""

    def __init__(self, queues: set[str]) -> None:
        self.queues = queues
        self.current: dict[int, str] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        if message.queue_name in self.queues:
            self.current[threading.get_ident()] = f"{message.actor_name}({', '.join(map(str, message.args))})"

    def after_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message, **kwargs: Any) -> None:
        self.current.pop(threading.get_ident(), None)

    after_skip_message = after_process_message

    def describe(self) -> str:
        return "; ".join(self.current.values())


def detach(worker: dramatiq.Worker) -> None:
    """Remove a stopped dramatiq Worker's middleware from its broker. dramatiq leaves it there, and it would go on
    adding consumers for newly declared queues that feed a worker nobody runs."""
    worker.broker.middleware[:] = [
        middleware for middleware in worker.broker.middleware if getattr(middleware, "worker", None) is not worker
    ]


def load_actors() -> None:
    """Import every app's `actors` module, so a worker knows every actor a message may name (django_dramatiq only
    does this in its own rundramatiq command)."""
    autodiscover_modules("actors")


_watchdogs_lock = threading.Lock()


def start_time_limits(broker: dramatiq.Broker) -> None:
    """Start dramatiq's TimeLimit watchdog, once per process and broker. It starts on `after_process_boot`, which
    only dramatiq's own CLI emits: without this, workers started here (esd_serve, serve_endpoint) never stopped an
    actor that overran its time limit."""
    with _watchdogs_lock:
        for middleware in broker.middleware:
            if isinstance(middleware, TimeLimit) and not getattr(middleware, "_esd_started", False):
                middleware.after_process_boot(broker)
                middleware._esd_started = True  # type: ignore[attr-defined]


_serving: dict[str, "EndpointWorker"] = {}


def serving_worker(queue_name: str) -> "EndpointWorker | None":
    """The EndpointWorker of this process that serves `queue_name` (its record and device), if any."""
    return _serving.get(queue_name)


class EndpointWorker:
    """One registered worker of an endpoint: start() and stop(); `stopped` is set once it has drained."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        device: str = "cpu",
        threads: int = 1,
        broker: dramatiq.Broker | None = None,
        queues: set[str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.device = device
        self.threads = threads
        self.broker = broker or dramatiq.get_broker()
        self.queues = queues or {endpoint.queue_name}
        self.record: Worker | None = None
        self.stopped = threading.Event()
        self._jobs = CurrentJob(self.queues)
        self._dramatiq: dramatiq.Worker | None = None
        self._heartbeat: Heartbeat | None = None
        self._swept = 0.0

    def start(self) -> None:
        load_actors()
        try:
            worker_starting.send(sender=self.__class__, endpoint=self.endpoint, device=self.device)
        except Exception:  # a failed warm-up costs the first job its time, never the worker
            logger.exception("Getting %s's worker ready failed; it starts cold", self.endpoint.name)
        for queue in self.queues:
            self.broker.declare_queue(queue)
        self.broker.add_middleware(self._jobs)
        worker = dramatiq.Worker(
            self.broker, queues=self.queues, worker_threads=self.threads, worker_timeout=settings.ESD_WORKER_POLL_MS
        )
        worker.queue_prefetch = self.threads  # one message per thread: nothing hoarded
        start_time_limits(self.broker)
        worker.start()
        self._dramatiq = worker
        self.record = services.worker_register(
            endpoint=self.endpoint, hostname=socket.gethostname(), pid=os.getpid(), device=self.device
        )
        for queue in self.queues:
            _serving[queue] = self
        self._swept = time.monotonic()
        self._heartbeat = Heartbeat(
            self._beat, interval=settings.ESD_WORKER_HEARTBEAT_SECONDS, name=f"heartbeat-{self.endpoint.name}"
        ).start()
        logger.info("Serving %s on %s (%d thread(s)) as worker %s", self.endpoint.name, self.device, self.threads,
                    self.record.pk)  # fmt: skip

    def _beat(self) -> bool:
        """One heartbeat: the worker's row (which keeps its jobs' leases alive), and every ESD_REQUEUE_AFTER_SECONDS
        the sweep. False once the endpoint is being deleted: the worker drains."""
        assert self.record is not None
        keep_going = services.worker_heartbeat(worker=self.record, current_job=self._jobs.describe())
        if time.monotonic() - self._swept >= settings.ESD_REQUEUE_AFTER_SECONDS:
            self._swept = time.monotonic()
            recover_waiting_work.send(sender=self.__class__, queues=self.queues, worker=self.record, periodic=True)
        if not keep_going:
            logger.info("%s is being deleted: draining", self.endpoint.name)
            threading.Thread(target=self.stop, daemon=True).start()
        return keep_going

    def running_jobs(self) -> list[str]:
        """What this worker's threads are running now (`actor(arguments)`), for a person waiting on a stop."""
        return list(self._jobs.current.values())

    def request_stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop(wait=False)

    def stop(self) -> None:
        """Finish the message in hand, leave the queue (unstarted messages stay there), deregister."""
        if self.stopped.is_set():
            return
        if self._heartbeat is not None:
            self._heartbeat.stop(wait=False)
        if self._dramatiq is not None:
            try:
                self._dramatiq.stop()
            except Exception:
                # Raised by the last step, closing the consumers' connections, once the threads have stopped: pika
                # can fail there when the connection breaks under it (seen on CI with RabbitMQ). The worker must
                # still leave its queues and deregister, or it would count as alive until its heartbeat expires.
                logger.warning("Closing the broker connections of %s failed", self.endpoint.name, exc_info=True)
            detach(self._dramatiq)
        try:
            worker_draining.send(sender=self.__class__, queues=self.queues)
        except Exception:
            logger.exception("Finishing the work %s took on failed", self.endpoint.name)
        for queue in self.queues:
            if _serving.get(queue) is self:
                del _serving[queue]
        if self._jobs in self.broker.middleware:
            self.broker.middleware.remove(self._jobs)
        if self.record is not None:
            try:
                services.worker_deregister(worker=self.record)
            except Exception:
                logger.exception("Could not deregister worker %s", self.record.pk)
        close_old_connections()
        self.stopped.set()
