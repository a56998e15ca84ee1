"""Reads on users and roles, with ESD's visibility rules (esd-behaviour.md §5.1, §6.2)."""

from collections import defaultdict
from collections.abc import Iterable

from django.contrib.auth.models import Permission
from django.db.models import Prefetch, Q, QuerySet

from . import esd_permissions
from .models import Role, User
from .permissions import holds
from .roles import IT_OPERATOR


def roles_with_permissions(*, names: Iterable[str] | None = None) -> QuerySet[Role]:
    roles = Role.objects.select_related("group").prefetch_related(
        Prefetch(
            "group__permissions",
            queryset=Permission.objects.select_related("content_type"),
            to_attr="prefetched_permissions",
        )
    )
    if names is not None:
        roles = roles.filter(group__name__in=list(names))
    return roles.order_by("group__name")


def role_permission_strings(role: Role) -> list[str]:
    """The role's ESD strings in canonical order, read from its group's Django permissions."""
    permissions = getattr(role.group, "prefetched_permissions", None)
    if permissions is None:
        permissions = list(role.group.permissions.all())
    strings = {
        string
        for permission in permissions
        if permission.content_type.app_label == "accounts"
        and (string := esd_permissions.from_codename(permission.codename))
    }
    return sorted(strings, key=esd_permissions.sort_key)


def role_list(*, viewer: User, name: str | None = None) -> list[Role]:
    """`GET /roles`: every role with role:all; with role:list the viewer's own roles and those it created."""
    roles = roles_with_permissions()
    if name:
        roles = roles.filter(group__name=name)
    return list(visible_roles(viewer, roles))


def visible_roles(viewer: User, roles: QuerySet[Role]) -> QuerySet[Role]:
    """The roles `viewer` may see (`GET /roles` and the admin's list): all with role:all; with role:list its own
    roles and those it created."""
    if holds(viewer, "role", "all"):
        return roles
    if holds(viewer, "role", "list"):
        return roles.filter(pk__in=Role.objects.filter(Q(created_by=viewer) | Q(group__user=viewer)).values("pk"))
    return roles.none()


def user_role_names(users: Iterable[User]) -> dict[int, list[str]]:
    """Each user's role names, in the order they were given (memberships' insertion order)."""
    membership = User.groups.through
    names: dict[int, list[str]] = defaultdict(list)
    rows = membership.objects.filter(user__in=list(users)).order_by("id").values_list("user_id", "group__name")
    for user_id, group_name in rows:
        names[user_id].append(group_name)
    return names


def user_list(*, viewer: User, username: str | None = None) -> list[User]:
    """`GET /users`: everyone with user:all; with user:list the users the viewer created; always the viewer."""
    users = User.objects.filter(is_active=True).order_by("username")
    if username:
        users = users.filter(username=username)
    return list(visible_users(viewer, users))


def visible_users(viewer: User, users: QuerySet[User]) -> QuerySet[User]:
    """The users `viewer` may see (`GET /users`, the admin's user and token lists, its user pickers): everyone
    with user:all; with user:list those it created; always itself."""
    if holds(viewer, "user", "all"):
        return users
    visible = Q(pk=viewer.pk)
    if holds(viewer, "user", "list"):
        visible |= Q(created_by=viewer)
    return users.filter(visible)


def it_operator_user_ids() -> list[int]:
    return list(User.objects.filter(is_active=True, groups__name=IT_OPERATOR).values_list("pk", flat=True))
