"""OpenAPI pieces for ESD's wire shapes, so the schema documents the bodies clients really get."""

from typing import Any

from drf_spectacular.openapi import AutoSchema

GATEWAY_ERROR: dict[str, Any] = {
    "type": "object",
    "description": (
        'Gateway-style error (`{"message": "Unauthorized"}`, `{"message": "Forbidden"}`) or, for a '
        "refused operation, the envelope with statusCode."
    ),
    "properties": {"message": {"type": "string"}, "statusCode": {"type": "integer"}},
    "required": ["message"],
}

ERROR: dict[str, Any] = {
    "type": "object",
    "description": "Handler error in the ESD envelope.",
    "properties": {"statusCode": {"type": "integer"}, "message": {"type": "string"}},
    "required": ["statusCode", "message"],
}


def envelope(data: dict[str, Any] | None = None, message: str | None = None) -> dict[str, Any]:
    """The `{statusCode, message, data}` envelope around `data`'s schema."""
    message_schema: dict[str, Any] = {"type": "string"}
    if message is not None:
        message_schema["example"] = message
    properties: dict[str, Any] = {"statusCode": {"type": "integer"}, "message": message_schema}
    required = ["statusCode", "message"]
    if data is not None:
        properties["data"] = data
        required.append("data")
    return {"type": "object", "properties": properties, "required": required}


def request_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A route's JSON-Schema body as an OpenAPI request body (the same schema the route validates with)."""
    return {"application/json": schema}


def errors(*statuses: int) -> dict[int, dict[str, Any]]:
    """Error responses: 401/403 from the gateway layer, the rest in the envelope."""
    return {status: GATEWAY_ERROR if status in (401, 403) else ERROR for status in statuses}


def strip_optional_slash(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular hook: ESD routes are documented as clients call them, without the tolerated trailing slash."""
    return [(path.rstrip("/") or "/", *rest) for path, *rest in endpoints]


class EsdAutoSchema(AutoSchema):
    """ESD's DELETE routes take JSON bodies (`role_name_list`, ...); drf-spectacular documents bodies only for
    POST/PUT/PATCH, so DELETE is described as if it were POST for the request-body part alone."""

    def _get_request_body(self, direction: str = "request") -> Any:
        if self.method != "DELETE":
            return super()._get_request_body(direction)
        self.method = "POST"
        try:
            return super()._get_request_body(direction)
        finally:
            self.method = "DELETE"
