"""Waking up whoever waits for a job to finish (a Real-time `start`), without a sleep loop.

Finishing a job calls `notify()`. Waiters in the same process (esd_serve, tests) are woken at once through a
condition variable. On PostgreSQL the finish also sends `NOTIFY esd_job_done`, and each web process keeps one
LISTEN connection that wakes its waiters, so a gunicorn web process hears of jobs that workers on other hosts
finish. Every wake-up re-reads the job's row; with neither (SQLite and a separate worker process) the row is
re-read once a second.
"""

import logging
import threading
import time

from django.db import connection, transaction

from .models import InferenceJob

logger = logging.getLogger(__name__)

CHANNEL = "esd_job_done"
FALLBACK_SECONDS = 1.0

_condition = threading.Condition()
_listener: threading.Thread | None = None
_listener_lock = threading.Lock()
_stop = threading.Event()


def _wake() -> None:
    with _condition:
        _condition.notify_all()


def notify(job_id: str) -> None:
    """Call after a job's final state is written (inside or outside a transaction)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, job_id])
    transaction.on_commit(_wake)


def _listen(params: dict) -> None:
    import psycopg

    while not _stop.is_set():
        try:
            with psycopg.connect(**params, autocommit=True) as listener:
                listener.execute(f"LISTEN {CHANNEL}")
                while not _stop.is_set():
                    for _ in listener.notifies(timeout=1.0):
                        _wake()
        except Exception:  # the database restarts: listen again shortly
            logger.warning("LISTEN %s failed; retrying", CHANNEL, exc_info=True)
            _stop.wait(1.0)


def stop_listener() -> None:
    """Close this process's LISTEN connection (tests do, before dropping their database)."""
    global _listener
    with _listener_lock:
        if _listener is not None:
            _stop.set()
            _listener.join(timeout=5)
            _listener = None
            _stop.clear()


def _ensure_listener() -> None:
    global _listener
    if connection.vendor != "postgresql":
        return
    with _listener_lock:
        if _listener is None or not _listener.is_alive():
            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            _listener = threading.Thread(target=_listen, args=(params,), name="esd-job-listener", daemon=True)
            _listener.start()


def wait_finished(job_id: str, timeout: float) -> InferenceJob | None:
    """The job once it has finished, or None when `timeout` seconds pass first."""
    _ensure_listener()
    deadline = time.monotonic() + timeout
    while True:
        with _condition:
            job = InferenceJob.objects.filter(pk=job_id).first()
            if job is None or job.finished:
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            _condition.wait(min(remaining, FALLBACK_SECONDS))
