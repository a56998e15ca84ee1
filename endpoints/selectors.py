"""Reads on endpoints, with ESD's visibility (esd-behaviour.md §8.7) and their live state."""

from django.db.models import Count, Q, QuerySet

from accounts.models import User
from accounts.permissions import holds, visible
from accounts.selectors import viewer_roles

from . import services
from .models import Endpoint, EndpointStatus


def with_live_counts(endpoints: QuerySet[Endpoint]) -> QuerySet[Endpoint]:
    alive = Q(workers__stopped_at__isnull=True, workers__last_heartbeat__gte=services.live_cutoff())
    return endpoints.annotate(
        live=Count("workers", filter=alive),
        busy=Count("workers", filter=alive & ~Q(workers__current_job="")),
    )


def endpoint_list(*, viewer: User, subject: User, endpoint_id: str | None = None) -> list[Endpoint]:
    """Endpoints `viewer` may see: all with sagemaker_endpoint:all; with :list those whose roles the subject (or a
    role the viewer created) shares. Endpoints being deleted are not listed (ESD removed them at once)."""
    endpoints = Endpoint.objects.exclude(status=EndpointStatus.DELETING).select_related("created_by")
    if endpoint_id:
        endpoints = endpoints.filter(pk=endpoint_id) if _is_uuid(endpoint_id) else endpoints.none()
    found = [services.endpoint_refresh(endpoint) for endpoint in endpoints]
    if holds(viewer, "sagemaker_endpoint", "all"):
        return found
    if not holds(viewer, "sagemaker_endpoint", "list"):
        return []
    roles = viewer_roles(viewer, subject)
    return [
        endpoint
        for endpoint in found
        if endpoint.created_by_id == viewer.pk
        or (
            endpoint.owner_group_or_role
            and visible(endpoint.owner_group_or_role, username=subject.username, role_names=roles)
        )
    ]


def endpoint_usable_by(user: User, endpoint: Endpoint) -> bool:
    """Whether `user`'s jobs may run on `endpoint` (its roles list names the user or one of the user's roles)."""
    return visible(endpoint.owner_group_or_role, username=user.username, role_names=viewer_roles(user, user))


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
