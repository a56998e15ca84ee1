"""JSON Schemas of the accounts routes' bodies: validated by EsdAPIView and published in the OpenAPI schema.

Names are ASCII with a length cap (architecture.md §5); unknown fields are refused, except those ESD clients are
known to send and ESD ignored (POST /users `permissions`).
"""

from typing import Any

from accounts import esd_permissions
from accounts.models import NAME_MAX_LENGTH

USERNAME: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": NAME_MAX_LENGTH,
    "pattern": "^[A-Za-z0-9@.+_-]+$",
}
ROLE_NAME: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": NAME_MAX_LENGTH,
    "pattern": "^[A-Za-z0-9@.+_-]+( [A-Za-z0-9@.+_-]+)*$",
}
PERMISSION: dict[str, Any] = {"type": "string", "enum": list(esd_permissions.PERMISSIONS)}
PASSWORD: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 128}


def name_list(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item, "minItems": 1, "maxItems": 100}


def _names_to_delete() -> dict[str, Any]:
    # Deleting a name that does not exist is a no-op, so any short non-empty string is acceptable.
    return name_list({"type": "string", "minLength": 1, "maxLength": NAME_MAX_LENGTH})


ROLE_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "role_name": ROLE_NAME,
        "creator": USERNAME,
        "permissions": {"type": "array", "items": PERMISSION, "minItems": 1, "maxItems": 20},
    },
    "required": ["role_name", "creator", "permissions"],
    "additionalProperties": False,
}

ROLE_DELETE: dict[str, Any] = {
    "type": "object",
    "properties": {"role_name_list": _names_to_delete()},
    "required": ["role_name_list"],
    "additionalProperties": False,
}

USER_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": USERNAME,
        "creator": USERNAME,
        "password": PASSWORD,
        "initial": {"type": "boolean"},
        "roles": {"type": "array", "items": ROLE_NAME, "minItems": 1, "maxItems": 20},
        "permissions": {
            "type": "array",
            "items": {"type": "string"},
            "maxItems": 20,
            "description": "Accepted for ESD clients and ignored: a user's permissions come from its roles.",
        },
    },
    "required": ["username", "creator", "password"],
    "additionalProperties": False,
}

USER_DELETE: dict[str, Any] = {
    "type": "object",
    "properties": {"user_name_list": _names_to_delete()},
    "required": ["user_name_list"],
    "additionalProperties": False,
}

TOKEN_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {"username": USERNAME, "password": PASSWORD},
    "required": ["username", "password"],
    "additionalProperties": False,
}

# Response shapes, for the OpenAPI schema.
ROLE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "role_name": {"type": "string"},
        "creator": {"type": "string"},
        "permissions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["role_name", "creator", "permissions"],
}
ROLE_LIST: dict[str, Any] = {
    "type": "object",
    "properties": {
        "roles": {"type": "array", "items": ROLE},
        "previous_evaluated_key": {"type": "string"},
        "last_evaluated_key": {"type": "string", "nullable": True},
    },
    "required": ["roles", "previous_evaluated_key", "last_evaluated_key"],
}
USER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string"}},
        "creator": {"type": "string"},
        "permissions": {"type": "array", "items": {"type": "string"}},
        "password": {"type": "string", "description": "Always `********`: passwords are stored hashed."},
    },
    "required": ["username", "roles", "creator", "permissions", "password"],
}
USER_LIST: dict[str, Any] = {
    "type": "object",
    "properties": {
        "users": {"type": "array", "items": USER},
        "previous_evaluated_key": {"type": "string"},
        "last_evaluated_key": {"type": "string"},
    },
    "required": ["users", "previous_evaluated_key", "last_evaluated_key"],
}
INITIAL_USER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "user": {
            "type": "object",
            "properties": {"username": {"type": "string"}, "roles": {"type": "array", "items": {"type": "string"}}},
        },
        "all_roles": {"type": "array", "items": {"type": "string"}},
    },
}
TOKEN: dict[str, Any] = {
    "type": "object",
    "properties": {
        "token": {"type": "string", "description": "Send as `Authorization: Bearer <token>`. Shown only once."},
        "username": {"type": "string"},
    },
    "required": ["token", "username"],
}
