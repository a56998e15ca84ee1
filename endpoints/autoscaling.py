"""The autoscaling signal: per endpoint, the backlog (queued + running jobs) and the instance count it calls for.

No scheduler here: the figures are exported on /metrics for Kubernetes HPA or KEDA to act on, and shown in the
admin. Apps that keep jobs in the database (inferences) add what they know through `register_backlog_source`.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from esd.queues import queue_depth

from .models import Endpoint

# Each source returns, for an endpoint, the number of jobs the database holds as queued or running for it.
_backlog_sources: list[Callable[[Endpoint], int]] = []


def register_backlog_source(source: Callable[[Endpoint], int]) -> None:
    if source not in _backlog_sources:
        _backlog_sources.append(source)


@dataclass(frozen=True)
class Scaling:
    queue_depth: int
    running: int
    backlog: int
    desired: int


def scaling(endpoint: Endpoint, live_workers: int, busy_workers: int) -> Scaling:
    """Backlog = max(what the broker holds, what the database says) + jobs in hand; desired instances =
    ceil(backlog / ESD_AUTOSCALE_TARGET_BACKLOG), within [min, max] (0..max for an autoscaled Async endpoint,
    with at least one while any work waits, as ESD's 0->1 step did)."""
    depth = queue_depth(endpoint.queue_name)
    recorded = sum(source(endpoint) for source in _backlog_sources)
    backlog = max(depth + busy_workers, recorded)
    low, high = endpoint.min_instance_count, endpoint.initial_instance_count
    if low == high:
        desired = high
    else:
        desired = math.ceil(backlog / max(1, settings.ESD_AUTOSCALE_TARGET_BACKLOG))
        desired = min(high, max(low, desired, 1 if backlog else 0))
    return Scaling(queue_depth=depth, running=busy_workers, backlog=backlog, desired=desired)
