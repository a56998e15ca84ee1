"""The ESD routes of accounts: /roles, /users, and auth/token (beyond ESD). Thin: validate, call, render."""

from typing import Any, ClassVar

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import selectors, services
from accounts.api.callers import acting_user, key_alone_accepted, key_holder_or_caller, request_caller
from accounts.roles import IT_OPERATOR
from esd import openapi
from esd.client_address import ClientScopedRateThrottle
from esd.exceptions import EsdError
from esd.responses import esd_response
from esd.views import EsdAPIView

from . import schemas
from .serializers import role_data, users_data

UNKNOWN_USER = 'user: "{name}" not exist'
UNKNOWN_CREATOR = "creator {name} not exist"


def token_mode() -> bool:
    return settings.ESD_AUTH_MODE == "token"


class RolesView(EsdAPIView):
    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"POST": schemas.ROLE_CREATE, "DELETE": schemas.ROLE_DELETE}

    def requires_caller(self, request: Request) -> bool:
        # ESD 1.4.0 took POST's caller from the body's `creator`, and DELETE took no user at all; esd-1.4 mode keeps
        # both for its clients (DELETE with the key alone acts as the administrator).
        if request.method == "DELETE":
            return not key_alone_accepted()
        return not (request.method == "POST" and not token_mode())

    @extend_schema(
        operation_id="roles_list",
        summary="List the roles the caller may see",
        parameters=[OpenApiParameter("role", str, description="Only the role of this name.")],
        responses={200: openapi.envelope(schemas.ROLE_LIST), **openapi.errors(400, 401, 403)},
        tags=["roles"],
    )
    def get(self, request: Request) -> Response:
        viewer = request_caller(request, unknown=UNKNOWN_USER)
        roles = selectors.role_list(viewer=viewer, name=request.query_params.get("role") or None)
        data = {
            "roles": [role_data(role) for role in roles],
            "previous_evaluated_key": "not_applicable",
            "last_evaluated_key": None,
        }
        return esd_response(200, data=data)

    @extend_schema(
        operation_id="roles_create",
        summary="Create a role, or replace the permissions of one",
        request=openapi.request_body(schemas.ROLE_CREATE),
        responses={201: openapi.envelope(message="role created"), **openapi.errors(400, 401, 403, 413)},
        tags=["roles"],
    )
    def post(self, request: Request) -> Response:
        actor = acting_user(request, named=self.body["creator"], field="creator", unknown=UNKNOWN_CREATOR)
        services.role_upsert(actor=actor, name=self.body["role_name"], permissions=self.body["permissions"])
        return esd_response(201, "role created")

    @extend_schema(
        operation_id="roles_delete",
        summary="Delete roles (their members lose them)",
        request=openapi.request_body(schemas.ROLE_DELETE),
        responses={204: None, **openapi.errors(400, 401, 403, 413)},
        tags=["roles"],
    )
    def delete(self, request: Request) -> Response:
        actor = key_holder_or_caller(request, unknown=UNKNOWN_USER)
        services.role_delete_many(actor=actor, names=self.body["role_name_list"])
        return esd_response(204)


class UsersView(EsdAPIView):
    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"POST": schemas.USER_CREATE, "DELETE": schemas.USER_DELETE}

    def requires_caller(self, request: Request) -> bool:
        # The first-run request creates the first user, so nobody can hold credentials yet.
        if request.method == "POST":
            try:
                body = self.raw_body
            except EsdError:
                return True
            return not (isinstance(body, dict) and body.get("initial") is True)
        return True

    @extend_schema(
        operation_id="users_list",
        summary="List the users the caller may see",
        parameters=[
            OpenApiParameter("username", str, description="Only this user."),
            OpenApiParameter(
                "show_password", str, description="Accepted for ESD clients; passwords are never returned."
            ),
        ],
        responses={200: openapi.envelope(schemas.USER_LIST), **openapi.errors(400, 401, 403)},
        tags=["users"],
    )
    def get(self, request: Request) -> Response:
        viewer = request_caller(request, unknown=UNKNOWN_USER)
        users = selectors.user_list(viewer=viewer, username=request.query_params.get("username") or None)
        data = {
            "users": users_data(users),
            "previous_evaluated_key": "not_applicable",
            "last_evaluated_key": "not_applicable",
        }
        return esd_response(200, data=data)

    @extend_schema(
        operation_id="users_create",
        summary="Create a user or replace its password and roles; `initial` creates the first administrator",
        request=openapi.request_body(schemas.USER_CREATE),
        responses={
            201: openapi.envelope(schemas.INITIAL_USER, message="Created"),
            **openapi.errors(400, 401, 403, 413),
        },
        tags=["users"],
    )
    def post(self, request: Request) -> Response:
        body = self.body
        if body.get("initial") is True:
            # No account exists yet for the body's `creator` to name: the first administrator is its own creator.
            user = services.user_create_initial(username=body["username"], password=body["password"])
            data = {"user": {"username": user.username, "roles": [IT_OPERATOR]}, "all_roles": [IT_OPERATOR]}
            return esd_response(201, "Created", data)
        if not body.get("roles"):
            raise EsdError(400, '[object has missing required properties (["roles"])]')
        actor = acting_user(request, named=body["creator"], field="creator", unknown=UNKNOWN_CREATOR)
        services.user_upsert(
            actor=actor, username=body["username"], password=body["password"], role_names=body["roles"]
        )
        return esd_response(201, "Created")

    @extend_schema(
        operation_id="users_delete",
        summary="Delete users (all of them or, when one is refused, none)",
        request=openapi.request_body(schemas.USER_DELETE),
        responses={204: None, **openapi.errors(400, 401, 403, 413)},
        tags=["users"],
    )
    def delete(self, request: Request) -> Response:
        actor = request_caller(request, unknown=UNKNOWN_USER)
        services.user_delete_many(actor=actor, usernames=self.body["user_name_list"])
        return esd_response(204)


class AuthTokenView(EsdAPIView):
    """`POST auth/token` (beyond ESD): a username and password for a new API token, rate-limited."""

    authentication_classes = []  # type: ignore[var-annotated]
    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"POST": schemas.TOKEN_CREATE}
    throttle_classes = [ClientScopedRateThrottle]
    throttle_scope = "auth"

    def requires_caller(self, request: Request) -> bool:
        return False

    @extend_schema(
        operation_id="auth_token_create",
        summary="Exchange a username and password for an API token",
        request=openapi.request_body(schemas.TOKEN_CREATE),
        responses={201: openapi.envelope(schemas.TOKEN), **openapi.errors(400, 403, 413, 429)},
        tags=["auth"],
        auth=[],
    )
    def post(self, request: Request) -> Response:
        token, raw = services.auth_token_issue(username=self.body["username"], password=self.body["password"])
        return esd_response(201, data={"token": raw, "username": token.user.username})
