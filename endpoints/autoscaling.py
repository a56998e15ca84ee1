"""The autoscaling signal: per endpoint, the backlog (queued + running jobs) and the instance count it calls for.

No scheduler here: the figures are exported on /metrics for Kubernetes HPA or KEDA to act on, and shown in the
admin. Apps that keep jobs in the database (inferences) add what they know through `register_backlog_source`: the
broker alone cannot say (the in-process broker has no depth to ask, and a message taken by a worker is in neither
count), so each figure is the larger of the broker's and the database's.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from esd.queues import queue_depth

from .models import Endpoint

# Each source returns, for an endpoint, the jobs the database holds for it as (queued, running).
_backlog_sources: list[Callable[[Endpoint], tuple[int, int]]] = []


def register_backlog_source(source: Callable[[Endpoint], tuple[int, int]]) -> None:
    if source not in _backlog_sources:
        _backlog_sources.append(source)


@dataclass(frozen=True)
class Scaling:
    queue_depth: int
    running: int
    backlog: int
    desired: int


def scaling(endpoint: Endpoint, live_workers: int, busy_workers: int) -> Scaling:
    """Queued = max(the broker's queue depth, the jobs the database holds as waiting); running = max(busy workers,
    jobs held by live workers); backlog = queued + running; desired instances = ceil(backlog /
    ESD_AUTOSCALE_TARGET_BACKLOG), within [min, max] (0..max for an autoscaled Async endpoint, with at least one
    while any work waits, as ESD's 0->1 step did)."""
    recorded = [source(endpoint) for source in _backlog_sources]
    depth = max([queue_depth(endpoint.queue_name), *(queued for queued, _ in recorded)])
    running = max([busy_workers, *(held for _, held in recorded)])
    backlog = depth + running
    low, high = endpoint.min_instance_count, endpoint.initial_instance_count
    if low == high:
        desired = high
    else:
        desired = math.ceil(backlog / max(1, settings.ESD_AUTOSCALE_TARGET_BACKLOG))
        desired = min(high, max(low, desired, 1 if backlog else 0))
    return Scaling(queue_depth=depth, running=running, backlog=backlog, desired=desired)
