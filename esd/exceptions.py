"""Errors of the ESD routes and the handler that turns every one of them into ESD's wire shapes.

Two layers answer errors in ESD (esd-behaviour.md §1.4): the gateway (`{"message": ...}` only) and the handlers
(the `{statusCode, message}` envelope). Services raise the project's domain errors (esd/errors.py) or Django's
ValidationError / PermissionDenied, views and the request layer raise EsdError with ESD's status; this module maps
them all, so no DRF `{"detail": ...}` body ever reaches an ESD client.
"""

import logging
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from . import errors
from .responses import envelope, gateway_response

logger = logging.getLogger(__name__)

# ESD's status for each kind of refusal (esd-behaviour.md §1.4: ESD answers a bad request, a taken name and a wrong
# state alike with 400).
STATUS_OF_REFUSAL: dict[type[errors.Refused], int] = {
    errors.Invalid: 400,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.TooLarge: 413,
    errors.Unavailable: 503,
}


class EsdError(Exception):
    """A handler-level error: answered as the envelope with this status and message (and data, if any)."""

    def __init__(self, status: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data


class ApiKeyRejected(drf.APIException):
    """Missing or wrong `x-api-key`: the gateway's 403 `{"message": "Forbidden"}`."""

    status_code = 403
    default_detail = "Forbidden"


class RouteNotFound(drf.APIException):
    """No ESD route at this path."""

    status_code = 404
    default_detail = "Not Found"


def _validation_message(exc: DjangoValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(
            f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
            for field, messages in exc.message_dict.items()
        )
    return " ".join(exc.messages)


def _flatten(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)


DATABASE_UNAVAILABLE = "the database is unavailable (restarting or unreachable); try again in a few seconds"
RETRY_AFTER_SECONDS = "5"


def database_unavailable(exc: BaseException | None) -> bool:
    """A lost or refused database connection: the request may succeed once it is back (503, not 500)."""
    return isinstance(exc, OperationalError | InterfaceError)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if database_unavailable(exc):
        logger.warning("Database unavailable during %s: %s", context["request"].path, exc)
        return Response(envelope(503, DATABASE_UNAVAILABLE), status=503, headers={"Retry-After": RETRY_AFTER_SECONDS})
    if isinstance(exc, EsdError):
        return Response(envelope(exc.status, exc.message, exc.data), status=exc.status)
    if isinstance(exc, errors.Refused):
        status = next(code for kind, code in STATUS_OF_REFUSAL.items() if isinstance(exc, kind))
        return Response(envelope(status, exc.message, exc.data), status=status)
    if isinstance(exc, drf.AuthenticationFailed) and exc.detail != drf.AuthenticationFailed.default_detail:
        return gateway_response(401, str(exc.detail))  # credentials were sent and are wrong: say which
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return gateway_response(401, "Unauthorized")
    if isinstance(exc, ApiKeyRejected):
        return gateway_response(403, "Forbidden")
    if isinstance(exc, DjangoValidationError):
        return Response(envelope(400, _validation_message(exc)), status=400)
    if isinstance(exc, Http404):
        return Response(envelope(404, str(exc) or None), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(envelope(403, str(exc) or None), status=403)
    if isinstance(exc, drf.APIException):
        headers = {}
        wait = getattr(exc, "wait", None)
        if isinstance(exc, drf.Throttled) and wait is not None:
            headers["Retry-After"] = str(int(wait))
        message = _flatten(exc.detail)
        if exc.status_code == 405:
            message = f"{HTTPStatus(405).phrase}: {context['request'].method} is not served on this route"
        return Response(envelope(exc.status_code, message), status=exc.status_code, headers=headers)
    return None
