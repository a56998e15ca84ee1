"""Reads on checkpoints with ESD's visibility rule (esd-behaviour.md §7.8), read from guardian grants in SQL."""

import uuid

from django.db.models import Prefetch, Q, QuerySet

from accounts import grants
from accounts.models import User
from accounts.permissions import holds

from .models import Checkpoint, CheckpointFile


def _with_files(checkpoints: QuerySet[Checkpoint]) -> QuerySet[Checkpoint]:
    return checkpoints.select_related("created_by").prefetch_related(
        Prefetch("files", queryset=CheckpointFile.objects.order_by("position"))
    )


def sees_everything(viewer: User) -> bool:
    return holds(viewer, "user", "all") or holds(viewer, "checkpoint", "all")


def visible_to(viewer: User, subject: User | None = None) -> Q:
    """Checkpoints `viewer` may see as `subject` (default: itself) would: a view grant to the subject, one of its
    roles or a role the viewer created, or open to everyone; those the viewer owns; all with user:all or
    checkpoint:all."""
    if sees_everything(viewer):
        return Q()
    return grants.access(Checkpoint, sees=subject or viewer, owns=viewer, roles_created_by=viewer)


def checkpoint_list(*, viewer: User, subject: User) -> QuerySet[Checkpoint]:
    """Checkpoints `viewer` may see, as `subject` would see them, newest first: one query (plus the prefetches of
    a page), to be filtered and paginated in the database."""
    return _with_files(Checkpoint.objects.filter(visible_to(viewer, subject))).order_by("-created_at", "-id")


def checkpoint_get(*, viewer: User | None, checkpoint_id: str) -> Checkpoint | None:
    """One checkpoint, or None when it does not exist or `viewer` may not see it (both answer 404).

    `viewer=None` skips the visibility check (esd-1.4 mode acting as the checkpoint's creator)."""
    try:
        uuid.UUID(checkpoint_id)
    except ValueError:
        return None
    checkpoints = Checkpoint.objects.filter(pk=checkpoint_id)
    if viewer is not None:
        checkpoints = checkpoints.filter(visible_to(viewer))
    return _with_files(checkpoints).first()
