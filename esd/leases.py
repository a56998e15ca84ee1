"""Background work one run holds at a time, for inference jobs and checkpoint downloads alike (as NetBox's JobRunner
serves every kind of job there): a row is *claimed* by one conditional UPDATE that only a free row matches, *held*
while its run's heartbeat keeps the lease alive, and *swept*: a row that waits with no live holder and no message in
the broker is sent again, once, however many workers sweep.

Each app says what its rows look like (a `Lease`: which rows wait for a run, which have no live holder); the rules
are here. What keeps a lease alive differs and stays the app's: an inference job is held while its worker's heartbeat
is recent (one row per worker, renewed by that worker's `Heartbeat`), a download while its own `lease_until` is
renewed by its run's `Heartbeat`.
"""

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

import dramatiq
from django.db import DatabaseError, close_old_connections, connection
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from .queues import enqueue, pending_messages

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Lease(Generic[M]):
    """How one model's rows are held. `waiting`: the rows that are to be worked on (a finished row is never
    claimed); `free`: a callable (it reads the clock) giving the rows no live run holds."""

    model: type[M]
    waiting: Q
    free: Callable[[], Q]

    def claim(self, pk: Any, *, also: Q | None = None, where: Q | None = None, **changes: Any) -> bool:
        """Become the one run holding row `pk` (free, or matching `also`: held by the caller already; and `where`,
        if given), writing `changes`, which hold the lease. False: someone else holds it, or it waits for nothing."""
        rows = self.model._default_manager.filter(self._unheld(also), self.waiting, pk=pk)
        return bool((rows.filter(where) if where is not None else rows).update(**changes))

    def lost(self, rows: QuerySet[M], *, older_than: float, also: Q | None = None) -> QuerySet[M]:
        """Rows of `rows` that wait with no live holder (or match `also`), untouched for `older_than` seconds: the
        sweep's candidates. Whether their message is lost is the broker's to say (PendingMessages)."""
        cutoff = timezone.now() - timedelta(seconds=older_than)
        return rows.filter(self._unheld(also), self.waiting, updated_at__lt=cutoff)

    def _unheld(self, also: Q | None) -> Q:
        """The rows no live run holds, and those `also` adds (the caller's own)."""
        return self.free() | also if also is not None else self.free()

    def resend(
        self, row: M, message: dramatiq.Message, *, unsent: Callable[[], object] | None = None, **changes: Any
    ) -> bool:
        """Take the sweep of one lost row and send its `message`: the row is touched (with `changes`) only if it is
        as this sweep read it (its `updated_at`), so of several sweeping workers one sends. False: another sweep or
        a run changed it first, or the broker refused the message: then `unsent` runs, and the row stays waiting
        for the next sweep."""
        as_read = {"pk": row.pk, "updated_at": row.updated_at}  # type: ignore[attr-defined]
        if not self.model._default_manager.filter(self.waiting, **as_read).update(updated_at=timezone.now(), **changes):
            return False
        try:
            enqueue(message)
        except Exception as exc:
            logger.warning("Could not send %s(%s) again (the broker is down?): %s", message.actor_name, row.pk, exc)
            if unsent is not None:
                unsent()
            return False
        return True


@dataclass
class PendingMessages:
    """What the broker holds per queue, asked once per sweep: whether a row still has a message that will run it.
    None where the broker cannot be asked without consuming (RabbitMQ, the in-process broker)."""

    _known: dict[str, list[dramatiq.Message] | None] = field(default_factory=dict)

    def of(self, queue_name: str) -> list[dramatiq.Message] | None:
        if queue_name not in self._known:
            self._known[queue_name] = pending_messages(queue_name)
        return self._known[queue_name]

    def ids(self, queue_name: str) -> set[str] | None:
        messages = self.of(queue_name)
        return None if messages is None else {message.message_id for message in messages}

    def first_args(self, queue_name: str) -> set[str] | None:
        """The first argument of each message held (the row id the work is sent with)."""
        messages = self.of(queue_name)
        return None if messages is None else {str(message.args[0]) for message in messages if message.args}


class Heartbeat:
    """Calls `beat` every `interval` seconds on a thread of its own, from `start()` until `stop()` or until `beat`
    returns False. A failing beat (the database restarting) is logged and tried again at the next one; the thread
    closes its database connection when it ends, so none is left behind."""

    def __init__(self, beat: Callable[[], bool | None], *, interval: float, name: str) -> None:
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._interval):
                try:
                    if self._beat() is False:
                        return
                except DatabaseError:  # a database restart: the next beat tries again on a new connection
                    logger.warning("%s: a beat failed on the database; trying again", self._thread.name)
                    close_old_connections()
                except Exception:
                    logger.exception("%s: a beat failed; trying again", self._thread.name)
                    close_old_connections()
        finally:
            with contextlib.suppress(DatabaseError):
                connection.close()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, *, wait: bool = True) -> None:
        self._stop.set()
        if wait and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
