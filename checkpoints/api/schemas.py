"""JSON Schemas of the checkpoint routes (esd-behaviour.md §7.4, §7.7, §7.9), validated and published."""

from typing import Any

from checkpoints.models import CheckpointStatus, CheckpointType

CHECKPOINT_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "checkpoint_type": {"type": "string", "enum": list(CheckpointType.values)},
        "filenames": {
            "type": "array",
            "minItems": 1,
            "maxItems": 20,
            "items": {
                "type": "object",
                "properties": {
                    "filename": {"type": "string", "minLength": 1, "maxLength": 200},
                    "parts_number": {"type": "integer", "minimum": 1, "maximum": 100},
                },
                "required": ["filename", "parts_number"],
                "additionalProperties": False,
            },
        },
        "urls": {
            "type": "array",
            "minItems": 1,
            "maxItems": 20,
            "items": {"type": "string", "minLength": 1, "maxLength": 2048},
        },
        "params": {
            "type": "object",
            "properties": {
                "message": {"type": "string", "maxLength": 1000},
                "creator": {"type": "string", "minLength": 1, "maxLength": 64},
            },
        },
    },
    "required": ["checkpoint_type", "params"],
    "additionalProperties": False,
}

CHECKPOINT_UPDATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "minLength": 1, "enum": ["Initial", "Active", "Disabled"]},
        "name": {"type": "string", "minLength": 1, "maxLength": 20, "pattern": "^[A-Za-z][A-Za-z0-9_-]*$"},
        "multi_parts_tags": {
            "type": "object",
            "maxProperties": 20,
            "additionalProperties": {
                "type": "array",
                "maxItems": 10000,
                "items": {
                    "type": "object",
                    "properties": {
                        "ETag": {"type": "string", "minLength": 1, "maxLength": 128},
                        "PartNumber": {"type": "integer", "minimum": 1, "maximum": 10000},
                    },
                    "required": ["ETag", "PartNumber"],
                },
            },
        },
    },
    "additionalProperties": False,
}

CHECKPOINT_DELETE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "checkpoint_id_list": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {"type": "string", "minLength": 1, "maxLength": 64},
        }
    },
    "required": ["checkpoint_id_list"],
    "additionalProperties": False,
}

_CHECKPOINT_FIELDS: dict[str, Any] = {
    "id": {"type": "string", "format": "uuid"},
    "type": {"type": "string", "enum": list(CheckpointType.values)},
    "status": {"type": "string", "enum": list(CheckpointStatus.values)},
    "params": {"type": "object", "additionalProperties": True},
}
CHECKPOINT: dict[str, Any] = {
    "type": "object",
    "properties": {**_CHECKPOINT_FIELDS, "s3_location": {"type": "string"}},
    "required": ["id", "type", "s3_location", "status", "params"],
}
CHECKPOINT_CREATED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "checkpoint": CHECKPOINT,
        "s3PresignUrl": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "Per file name, the part upload URLs (index i is PartNumber i+1). PUT each part; keep "
            "its ETag header.",
        },
    },
    "required": ["checkpoint", "s3PresignUrl"],
}
CHECKPOINT_ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        **_CHECKPOINT_FIELDS,
        "s3Location": {"type": "string"},
        "name": {"type": "array", "items": {"type": "string"}},
        "created": {"type": "string", "description": "Epoch seconds, as a decimal string."},
        "allowed_roles_or_users": {"type": "array", "items": {"type": "string"}},
        "error": {"type": "string", "nullable": True, "description": "Why a Failed checkpoint failed."},
        "progress": {
            "type": "object",
            "nullable": True,
            "description": "Bytes done and total of a download.",
            "properties": {"bytes_done": {"type": "integer"}, "bytes_total": {"type": "integer", "nullable": True}},
        },
    },
    "required": ["id", "s3Location", "type", "status", "name", "created", "params", "allowed_roles_or_users"],
}
CHECKPOINT_LIST: dict[str, Any] = {
    "type": "object",
    "properties": {
        "page": {"type": "integer"},
        "per_page": {"type": "integer"},
        "pages": {"type": "integer"},
        "total": {"type": "integer"},
        "checkpoints": {"type": "array", "items": CHECKPOINT_ITEM},
    },
    "required": ["page", "per_page", "pages", "total", "checkpoints"],
}
CHECKPOINT_UPDATED: dict[str, Any] = {
    "type": "object",
    "properties": {"checkpoint": CHECKPOINT},
    "required": ["checkpoint"],
}
