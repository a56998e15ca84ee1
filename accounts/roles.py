"""The built-in roles: created by roles_ensure_builtin (esd_bootstrap, and after every migrate)."""

from . import esd_permissions

IT_OPERATOR = "IT Operator"

BUILTIN_ROLES = {IT_OPERATOR: esd_permissions.ALL_PERMISSIONS}
