"""Checks of ESD permission strings (what services and selectors ask); who a request acts as is accounts.api.callers.

In every check `all` satisfies `create` and `list`; `create` and `list` do not imply each other
(esd-behaviour.md §3.1). A user's strings are the union of its roles', read through Django's permission
machinery (a superuser holds all of them).
"""

from . import esd_permissions
from .models import User


def permission_strings(user: User) -> set[str]:
    """The ESD permission strings a user holds through its roles (empty for inactive or anonymous users)."""
    if not user.is_authenticated or not user.is_active:
        return set()
    granted = user.get_all_permissions()
    return {
        permission
        for permission in esd_permissions.PERMISSIONS
        if f"accounts.{esd_permissions.codename(permission)}" in granted
    }


def holds(user: User, resource: str, action: str) -> bool:
    """Whether `user` may do `action` on `resource` (`resource:all` satisfies every action)."""
    strings = permission_strings(user)
    return f"{resource}:all" in strings or f"{resource}:{action}" in strings


def holds_string(user: User, permission: str) -> bool:
    """Whether `user` holds `permission` itself, or `resource:all` (what ESD demands to grant it to others)."""
    resource, action = permission.split(":")
    return holds(user, resource, action)


def bootstrap_admin() -> User | None:
    """The bootstrap administrator: the first active superuser (made by `esd_bootstrap` or `POST /users
    {initial}`), if there is one."""
    return User.objects.filter(is_superuser=True, is_active=True).order_by("date_joined", "pk").first()
