"""JSON Schemas of the inference routes (esd-behaviour.md §9.3, §9.10) and the response shapes for OpenAPI."""

from typing import Any

INFERENCE_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task_type": {"type": "string", "minLength": 1, "maxLength": 64},
        "inference_type": {"type": "string", "enum": ["Real-time", "Serverless", "Async"]},
        "models": {
            "type": "object",
            "properties": {"embeddings": {"type": "array"}},
            "additionalProperties": {"type": "array", "maxItems": 20, "items": {"type": "string", "maxLength": 255}},
        },
        "user_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "sagemaker_endpoint_name": {"type": "string", "minLength": 1, "maxLength": 64},
        # The WebUI sends these; their content is not used (ESD crashed without `filters`).
        "filters": {"type": "object"},
        "payload_string": {"type": "string"},
    },
    "required": ["task_type", "inference_type", "models"],
}

INFERENCE_DELETE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "inference_id_list": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {"type": "string", "minLength": 1, "maxLength": 64},
        },
    },
    "required": ["inference_id_list"],
}

_MODEL = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "array", "items": {"type": "string"}},
        "type": {"type": "string"},
    },
}
INFERENCE_CREATED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "inference": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "type": {"type": "string"},
                "api_params_s3_location": {"type": "string"},
                "api_params_s3_upload_url": {"type": "string"},
                "models": {"type": "array", "items": _MODEL},
            },
        }
    },
}
INFERENCE_STARTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "inference": {
            "type": "object",
            "properties": {
                "inference_id": {"type": "string"},
                "status": {"type": "string"},
                "endpoint_name": {"type": "string"},
                "output_path": {"type": "string"},
            },
        }
    },
}
JOB: dict[str, Any] = {
    "type": "object",
    "properties": {
        "InferenceJobId": {"type": "string"},
        "status": {"type": "string", "enum": ["created", "inprogress", "succeed", "failed"]},
        "taskType": {"type": "string"},
        "inference_type": {"type": "string"},
        "owner_group_or_role": {"type": "array", "items": {"type": "string"}},
        "createTime": {"type": "string"},
        "startTime": {"type": "string", "nullable": True},
        "completeTime": {"type": "string", "nullable": True},
        "image_names": {"type": "array", "items": {"type": "string"}},
        "sagemakerRaw": {"type": "string", "nullable": True},
        "inference_info_name": {"type": "string", "nullable": True},
        "params": {"type": "object"},
        "img_presigned_urls": {"type": "array", "items": {"type": "string"}},
        "output_presigned_urls": {"type": "array", "items": {"type": "string"}},
        "progress": {"type": "number", "description": "0..1, beyond ESD"},
        "cancelled": {"type": "boolean", "description": "beyond ESD"},
        "timings": {"type": "object", "description": "seconds per phase, beyond ESD"},
        "ignored_parameters": {"type": "array", "items": {"type": "string"}},
    },
}
INFERENCE_LIST: dict[str, Any] = {
    "type": "object",
    "properties": {
        "inferences": {"type": "array", "items": JOB},
        "last_evaluated_key": {"type": "string", "nullable": True},
    },
}
