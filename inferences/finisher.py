"""Storing a job's pictures off the device's path (issue 28.1).

A worker thread that ran the engine hands each succeeded job's result here and goes back to its queue, so the next
job's denoising loop starts while these pictures are PNG-encoded (in parallel: request/images.py) and stored. A job
is succeeded once its own files are stored; a failure here is that job's alone: a store that refuses fails it, a
store that is down lets go of it and sends it again (as a retried message would). Progress, cancel and the sweeps
see it running, held by this worker, until then.

Pictures waiting here are bounded: a worker thread that has more than AHEAD jobs waiting blocks before it takes the
next message, so a slow store slows the device instead of filling memory. A stopping worker waits for this queue
to empty (`wait_idle`, on esd.signals.worker_draining) before it deregisters.
"""

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from django.db import connection

logger = logging.getLogger(__name__)

THREADS = 2  # jobs stored side by side (each encodes its pictures on the shared PNG pool)
AHEAD = 4  # jobs waiting here at most before a worker thread blocks


class Finisher:
    def __init__(self, threads: int = THREADS, ahead: int = AHEAD) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="finish")
        self._room = threading.BoundedSemaphore(ahead)
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def submit(self, task: Callable[[], None], *, done: Callable[[], None]) -> Future[None]:
        """Run `task` on a finisher thread, then `done` (whatever happened). Blocks while AHEAD tasks wait."""
        self._room.acquire()

        def run() -> None:
            try:
                task()
            except Exception:  # the task settles its own job; anything left is a bug, logged, not lost silently
                logger.exception("Settling a job's outputs failed")
            finally:
                try:
                    done()
                finally:
                    connection.close()  # this thread's connection: finisher threads outlive any one job
                    self._room.release()

        with self._lock:
            future = self._pool.submit(run)
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
            if not self._pending:
                self._idle.notify_all()

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every handed-over job is settled. False: `timeout` seconds passed first."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._pending, timeout)


FINISHER = Finisher()


def drain(**kwargs: object) -> None:
    """esd.signals.worker_draining receiver: a stopping worker's handed-over jobs are stored before it leaves."""
    if FINISHER.pending():
        logger.info("Storing the outputs of %d finished job(s) before stopping", FINISHER.pending())
    FINISHER.wait_idle()
