"""The ESD response envelope and value formats (esd-behaviour.md §1.3)."""

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from rest_framework.response import Response

ESD_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def esd_time(value: datetime | None) -> str | None:
    """A timestamp as ESD writes it: UTC, no zone, always six microsecond digits (the WebUI parses exactly that)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime(ESD_TIME_FORMAT)


def envelope(status: int, message: str | None = None, data: Any = None) -> dict[str, Any]:
    """`{statusCode, message, data}`: message defaults to the reason phrase, data is left out when empty."""
    body: dict[str, Any] = {"statusCode": status}
    if message is None:
        message = HTTPStatus(status).phrase
    if message:
        body["message"] = message
    if data not in (None, {}, [], ""):
        body["data"] = data
    return body


def esd_response(status: int = 200, message: str | None = None, data: Any = None, **kwargs: Any) -> Response:
    """A DRF response carrying the envelope; 204 goes out with an empty body, as HTTP demands."""
    if status == HTTPStatus.NO_CONTENT:
        return Response(status=status, **kwargs)
    return Response(envelope(status, message, data), status=status, **kwargs)


def gateway_response(status: int, message: str) -> Response:
    """The API gateway's own error shape: only `message` (esd-behaviour.md §1.4)."""
    return Response({"message": message}, status=status)
