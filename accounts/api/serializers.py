"""Output shapes of the accounts routes, as ESD wrote them."""

from typing import Any

from accounts import selectors
from accounts.models import Role, User

HIDDEN_PASSWORD = "********"  # noqa: S105 (a mask, not a password)


def role_data(role: Role) -> dict[str, Any]:
    return {
        "role_name": role.name,
        "creator": role.creator,
        "permissions": selectors.role_permission_strings(role),
    }


def users_data(users: list[User]) -> list[dict[str, Any]]:
    """ESD's user items: roles in their given order, permissions the sorted union of the roles'.

    `password` is always hidden: passwords are stored as hashes and never returned (architecture.md §5).
    """
    role_names = selectors.user_role_names(users)
    wanted = {name for names in role_names.values() for name in names}
    strings = {
        role.name: selectors.role_permission_strings(role) for role in selectors.roles_with_permissions(names=wanted)
    }
    return [
        {
            "username": user.username,
            "roles": role_names.get(user.pk, []),
            "creator": user.creator,
            "permissions": sorted({p for name in role_names.get(user.pk, []) for p in strings.get(name, [])}),
            "password": HIDDEN_PASSWORD,
        }
        for user in users
    ]
