"""Per-process cache of loaded pipelines, most recently used first, within a memory budget.

A job on a model that is already loaded pays nothing to acquire it. Keys are the checkpoint's and the VAE's sha256
(not paths or names, which a rename changes), so a renamed checkpoint stays warm and a re-uploaded one does not.
The newest entry is always kept, even when it alone exceeds the budget: evicting it would reload it every job.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


@dataclass
class Entry:
    value: Any
    size: int
    lock: threading.Lock  # held while a job runs on the entry (LoRA/embedding loads change shared modules)


@dataclass(frozen=True)
class Acquired:
    entry: Entry
    seconds: float
    hit: bool


class PipelineCache:
    def __init__(self, budget_bytes: int, on_evict: Callable[[], None] | None = None) -> None:
        self.budget = budget_bytes
        self.on_evict = on_evict
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def used_bytes(self) -> int:
        return sum(entry.size for entry in self._entries.values())

    def acquire(self, key: Hashable, load: Callable[[], tuple[Any, int]]) -> Acquired:
        """The entry for `key`, loading it with `load() -> (value, size_bytes)` on a miss."""
        started = time.perf_counter()
        with self._lock:  # one load at a time per process: two would double the peak memory
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return Acquired(entry, time.perf_counter() - started, True)
            self.misses += 1
            value, size = load()
            entry = Entry(value, size, threading.Lock())
            self._entries[key] = entry
            self._evict(keep=key)
        return Acquired(entry, time.perf_counter() - started, False)

    def _evict(self, keep: Hashable) -> None:
        evicted = False
        for key in list(self._entries):
            if self.used_bytes <= self.budget:
                break
            if key == keep or self._entries[key].lock.locked():
                continue  # a job is running on it; it goes at the next load
            del self._entries[key]
            self.evictions += 1
            evicted = True
        if evicted and self.on_evict is not None:
            self.on_evict()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        if self.on_evict is not None:
            self.on_evict()
