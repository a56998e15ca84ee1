"""Reads on checkpoints with ESD's visibility rule (esd-behaviour.md §7.8)."""

import uuid

from django.db.models import Prefetch, QuerySet

from accounts.models import User
from accounts.permissions import holds, visible
from accounts.selectors import viewer_roles

from .models import Checkpoint, CheckpointFile


def _with_files(checkpoints: QuerySet[Checkpoint]) -> QuerySet[Checkpoint]:
    return checkpoints.select_related("created_by").prefetch_related(
        Prefetch("files", queryset=CheckpointFile.objects.order_by("position"))
    )


def sees_everything(viewer: User) -> bool:
    return holds(viewer, "user", "all") or holds(viewer, "checkpoint", "all")


def checkpoint_list(
    *,
    viewer: User,
    subject: User,
    statuses: list[str] | None = None,
    types: list[str] | None = None,
    roles: list[str] | None = None,
) -> list[Checkpoint]:
    """Checkpoints `viewer` may see, as `subject` would see them, newest first.

    A checkpoint is visible when its `allowed_roles_or_users` names `*`, the subject or one of the roles, when the
    viewer created it, or when the viewer holds user:all or checkpoint:all. The lists are JSON, so the rule is
    applied here rather than in SQL (SQLite has no JSON containment).
    """
    checkpoints = _with_files(Checkpoint.objects.all())
    if statuses:
        checkpoints = checkpoints.filter(status__in=statuses)
    if types:
        checkpoints = checkpoints.filter(type__in=types)
    everything = sees_everything(viewer)
    role_names = viewer_roles(viewer, subject)
    wanted = set(roles or [])
    return [
        checkpoint
        for checkpoint in checkpoints
        if (not wanted or wanted.intersection(checkpoint.allowed_roles_or_users))
        and (
            everything
            or checkpoint.created_by_id == viewer.pk
            or visible(checkpoint.allowed_roles_or_users, username=subject.username, role_names=role_names)
        )
    ]


def checkpoint_get(*, viewer: User | None, checkpoint_id: str) -> Checkpoint | None:
    """One checkpoint, or None when it does not exist or `viewer` may not see it (both answer 404).

    `viewer=None` skips the visibility check (esd-1.4 mode acting as the checkpoint's creator)."""
    try:
        uuid.UUID(checkpoint_id)
    except ValueError:
        return None
    checkpoint = _with_files(Checkpoint.objects.filter(pk=checkpoint_id)).first()
    if checkpoint is None:
        return None
    return checkpoint if viewer is None or checkpoint_visible_to(viewer, checkpoint) else None


def checkpoint_visible_to(viewer: User, checkpoint: Checkpoint, role_names: set[str] | None = None) -> bool:
    """ESD's rule for one user: checkpoint:all or user:all, its creator, or its allowed list naming the user or
    one of the user's roles (`role_names`, when the caller already has them)."""
    if sees_everything(viewer) or checkpoint.created_by_id == viewer.pk:
        return True
    roles = viewer_roles(viewer, viewer) if role_names is None else role_names
    return visible(checkpoint.allowed_roles_or_users, username=viewer.username, role_names=roles)
