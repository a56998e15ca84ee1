"""The base of every ESD route, and the routes that belong to no app.

EsdAPIView reproduces the gateway's order of checks (esd-behaviour.md §1.6): a route that needs a caller and got
no credentials at all answers 401; then the API key (403); then the body schema (400); then the handler.
"""

import hmac
import sys
from typing import Any, ClassVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions as drf
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import openapi
from .exceptions import (
    DATABASE_UNAVAILABLE,
    RETRY_AFTER_SECONDS,
    ApiKeyRejected,
    EsdError,
    RouteNotFound,
    database_unavailable,
)
from .responses import envelope, esd_response
from .validation import closed, parse_json_body, validate_body
from .version import VERSION


class JsonOnlyNegotiation(BaseContentNegotiation):
    """ESD answers JSON whatever `Accept` says; clients send all sorts (or nothing)."""

    def select_parser(self, request, parsers):  # type: ignore[no-untyped-def]
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):  # type: ignore[no-untyped-def]
        return renderers[0], renderers[0].media_type


def api_key_matches(request: Request) -> bool:
    expected = settings.ESD_API_KEY
    if not expected:
        return True
    given = request.headers.get("x-api-key", "")
    return hmac.compare_digest(given.encode(), expected.encode())


class EsdAPIView(APIView):
    """Base of the ESD routes: gateway check order, JSON bodies without Content-Type, the envelope, x-api-version.

    Subclasses name a JSON Schema per method in `body_schemas` and read the validated body from `self.body`.
    """

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {}
    content_negotiation_class = JsonOnlyNegotiation
    # Bodies are read by parse_json_body whatever their Content-Type, so DRF's parsers are not involved.
    parser_classes = []  # type: ignore[var-annotated]

    def requires_caller(self, request: Request) -> bool:
        """Whether this request must carry credentials (401 without). Routes override this."""
        return True

    def credentials_presented(self, request: Request) -> bool:
        return any(
            getattr(authenticator, "presented", lambda _request: False)(request)
            for authenticator in self.get_authenticators()
        )

    @property
    def raw_body(self) -> Any:
        if not hasattr(self, "_raw_body"):
            self._raw_body = parse_json_body(self.request)
        return self._raw_body

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.format_kwarg = self.get_format_suffix(**kwargs)
        request.accepted_renderer, request.accepted_media_type = self.perform_content_negotiation(request)
        if request.method == "OPTIONS":
            return  # CORS preflight is answered without authentication
        needs_caller = self.requires_caller(request)
        if needs_caller and not self.credentials_presented(request):
            raise drf.NotAuthenticated()
        if not api_key_matches(request):
            raise ApiKeyRejected()
        # Authenticating is lazy in DRF; touching request.user runs it (bad credentials raise 401 here).
        # An ESD-mode claim of an unknown username still authenticates (request.auth); the route answers it.
        if needs_caller and not (request.user.is_authenticated or request.auth is not None):
            raise drf.NotAuthenticated()
        self.check_throttles(request)
        if any("\x00" in key or "\x00" in value for key, value in request.query_params.items()):
            raise EsdError(400, "query parameters may not contain NUL characters")
        schema = self.body_schemas.get(request.method or "")
        if schema is not None:
            validate_body(schema if settings.ESD_AUTH_MODE == "esd-1.4" else closed(schema), self.raw_body)
            self.body: dict[str, Any] = self.raw_body

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["x-api-version"] = settings.ESD_API_VERSION
        response["x-esd-server-version"] = VERSION
        return response

    def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        allowed = ", ".join(self.allowed_methods)
        return Response(status=200, headers={"Allow": allowed})


class PingView(EsdAPIView):
    """`GET /ping`: the connection test. Needs only the API key, when one is set."""

    authentication_classes = []  # type: ignore[var-annotated]

    def requires_caller(self, request: Request) -> bool:
        return False

    @extend_schema(
        operation_id="ping",
        summary="Test the connection",
        responses={200: openapi.envelope(message="pong"), 403: openapi.GATEWAY_ERROR},
        tags=["ping"],
    )
    def get(self, request: Request) -> Response:
        return esd_response(200, "pong")


@extend_schema(exclude=True)
class UnknownRouteView(EsdAPIView):
    """Anything under the API prefix that is no route: a 404 in the envelope, never a redirect."""

    authentication_classes = []  # type: ignore[var-annotated]

    def requires_caller(self, request: Request) -> bool:
        return False

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        raise RouteNotFound(f"no route {request.method} /{request.path.lstrip('/')}")


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500. A database that went away (outside a DRF view: middleware, the admin) is a 503 with
    Retry-After, since the same request may succeed in a few seconds; anything else is Django's plain 500."""
    if not database_unavailable(sys.exc_info()[1]):
        return defaults.server_error(request)
    headers = {"Retry-After": RETRY_AFTER_SECONDS}
    if request.path.startswith(f"/{settings.ESD_API_PREFIX}"):
        return JsonResponse(envelope(503, DATABASE_UNAVAILABLE), status=503, headers=headers)
    return HttpResponse(f"Service unavailable: {DATABASE_UNAVAILABLE}.\n", status=503, content_type="text/plain",
                        headers=headers)  # fmt: skip
