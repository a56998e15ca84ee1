"""Reads on endpoints, with ESD's visibility (esd-behaviour.md §8.7) and their live state. Reads compute the status
the live workers make and never write it: heartbeats, registrations and exits store it (services.endpoint_refresh)."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from accounts import grants
from accounts.models import User
from accounts.permissions import holds
from esd.responses import esd_time

from .models import Endpoint, EndpointStatus, Worker


def live_cutoff() -> datetime:
    return timezone.now() - timedelta(seconds=settings.ESD_WORKER_DEAD_AFTER_SECONDS)


def live_workers(endpoint: Endpoint) -> QuerySet[Worker]:
    return endpoint.workers.filter(stopped_at__isnull=True, last_heartbeat__gte=live_cutoff())


def derived_status(endpoint: Endpoint, live: int) -> tuple[str, str]:
    """The status (and error) that follows from the live workers.

    InService while a worker is alive. With none: an autoscaled Async endpoint is scaled to zero (InService,
    count 0, as in ESD: its jobs wait and the platform scales it up); one that never had a worker is Creating;
    one whose last worker stopped cleanly is Stopped (an operator's choice, not a failure); any other is Failed,
    saying what happened to its workers.
    """
    if endpoint.status == EndpointStatus.DELETING:
        return EndpointStatus.DELETING, endpoint.error
    if live:
        return EndpointStatus.IN_SERVICE, ""
    if endpoint.end_time is None:
        return EndpointStatus.CREATING, ""
    if endpoint.min_instance_count == 0:
        return EndpointStatus.IN_SERVICE, ""
    last = endpoint.workers.order_by("-last_heartbeat").first()
    if last is None:
        return EndpointStatus.FAILED, "no worker is serving this endpoint"
    if last.stopped_at is not None:
        return EndpointStatus.STOPPED, ""
    return (
        EndpointStatus.FAILED,
        f"no live worker: the last heartbeat was at {esd_time(last.last_heartbeat)} "
        f"(workers count as dead after {settings.ESD_WORKER_DEAD_AFTER_SECONDS:g} s without one)",
    )


def endpoint_current(endpoint: Endpoint) -> Endpoint:
    """`endpoint` with the status, error and live-worker count its workers make now, set on the object only (coming
    into service stamps `end_time`, as SageMaker's endpoint creation ends)."""
    live = live_workers(endpoint).count()
    status, error = derived_status(endpoint, live)
    if status == EndpointStatus.IN_SERVICE and status != endpoint.status:
        endpoint.end_time = timezone.now()
    endpoint.status, endpoint.error = status, error
    endpoint.live_count = live  # type: ignore[attr-defined]
    return endpoint


def with_live_counts(endpoints: QuerySet[Endpoint]) -> QuerySet[Endpoint]:
    alive = Q(workers__stopped_at__isnull=True, workers__last_heartbeat__gte=live_cutoff())
    return endpoints.annotate(
        live=Count("workers", filter=alive),
        busy=Count("workers", filter=alive & ~Q(workers__current_job="")),
    )


def endpoint_list(*, viewer: User, subject: User, endpoint_id: str | None = None) -> list[Endpoint]:
    """Endpoints `viewer` may see: all with sagemaker_endpoint:all; with :list those the viewer owns and those
    granted to the subject or its roles (or a role the viewer created). Endpoints being deleted are not listed
    (ESD removed them at once)."""
    endpoints = Endpoint.objects.exclude(status=EndpointStatus.DELETING).select_related("created_by")
    if endpoint_id:
        endpoints = endpoints.filter(pk=endpoint_id) if _is_uuid(endpoint_id) else endpoints.none()
    found = [endpoint_current(endpoint) for endpoint in visible_endpoints(viewer, endpoints, subject=subject)]
    grants.attach_visibility(found)
    return found


def visible_endpoints(
    viewer: User, endpoints: QuerySet[Endpoint], *, subject: User | None = None
) -> QuerySet[Endpoint]:
    """The endpoints `viewer` may see (as `subject`, default itself, would): the API's list and the admin's."""
    if holds(viewer, "sagemaker_endpoint", "all"):
        return endpoints
    if not holds(viewer, "sagemaker_endpoint", "list"):
        return endpoints.none()
    return endpoints.filter(grants.access(Endpoint, sees=subject or viewer, owns=viewer, roles_created_by=viewer))


def usable_by(user: User) -> Q:
    """Endpoints whose roles list names `user` or one of its roles: where its jobs may run."""
    return grants.access(Endpoint, sees=user)


def endpoint_usable_by(user: User, endpoint: Endpoint) -> bool:
    return Endpoint.objects.filter(usable_by(user), pk=endpoint.pk).exists()


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
