"""JSON Schemas of the endpoint routes (esd-behaviour.md §8.4, §8.6)."""

from typing import Any

ENDPOINT_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "endpoint_name": {
            "type": "string",
            "minLength": 1,
            "maxLength": 20,
            "pattern": "^[a-zA-Z0-9](-*[a-zA-Z0-9])*$",
        },
        "endpoint_type": {"type": "string", "enum": ["Real-time", "Serverless", "Async"]},
        "instance_type": {"type": "string", "minLength": 1, "maxLength": 64},
        # ESD demanded a JSON number; the seed document's example sends "1", so a numeric string is accepted too.
        "initial_instance_count": {
            "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[1-9][0-9]{0,5}$"}]
        },
        "autoscaling_enabled": {"type": "boolean"},
        "assign_to_roles": {
            "type": "array",
            "minItems": 1,
            "maxItems": 10,
            "items": {"type": "string", "minLength": 1, "maxLength": 64},
        },
        "creator": {"type": "string", "minLength": 1, "maxLength": 64},
        "custom_docker_image_uri": {"type": "string", "maxLength": 512},
    },
    "required": [
        "endpoint_type",
        "instance_type",
        "initial_instance_count",
        "autoscaling_enabled",
        "assign_to_roles",
        "creator",
    ],
    "additionalProperties": False,
}

_NAMES = {
    "type": "array",
    "minItems": 1,
    "maxItems": 10,
    "items": {"type": "string", "minLength": 1, "maxLength": 64},
}
ENDPOINT_DELETE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "endpoint_name_list": _NAMES,
        "delete_endpoint_list": {**_NAMES, "description": "The seed document's name for endpoint_name_list."},
        "username": {"type": "string", "minLength": 1, "maxLength": 64},
    },
    "additionalProperties": False,
}

ENDPOINT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "EndpointDeploymentJobId": {"type": "string", "format": "uuid"},
        "endpoint_name": {"type": "string"},
        "endpoint_type": {"type": "string", "enum": ["Async", "Real-time"]},
        "endpoint_status": {"type": "string"},
        "status": {"type": "string", "nullable": True},
        "instance_type": {"type": "string"},
        "autoscaling": {"type": "boolean"},
        "max_instance_number": {"type": "string"},
        "current_instance_count": {"type": "string"},
        "startTime": {"type": "string"},
        "endTime": {"type": "string", "nullable": True},
        "error": {"type": "string", "nullable": True},
        "owner_group_or_role": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["EndpointDeploymentJobId", "endpoint_name", "endpoint_type", "endpoint_status", "status",
                 "current_instance_count", "endTime", "owner_group_or_role"],
}  # fmt: skip
ENDPOINT_CREATED: dict[str, Any] = {
    **ENDPOINT,
    "properties": {
        **ENDPOINT["properties"],
        "max_instance_number": {"anyOf": [{"type": "integer"}, {"type": "string"}], "description": "As sent."},
    },
}
ENDPOINT_LIST: dict[str, Any] = {
    "type": "object",
    "properties": {"endpoints": {"type": "array", "items": ENDPOINT}},
    "required": ["endpoints"],
}
