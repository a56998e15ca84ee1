"""The checkpoint routes: GET/POST/DELETE /checkpoints and PUT /checkpoints/{id}. Thin: validate, call, render."""

import math
from typing import Any, ClassVar

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import grants
from accounts.access import require
from accounts.api.callers import (
    acting_user,
    key_alone_accepted,
    key_holder_or_caller,
    list_subject,
    owner_or_caller,
    request_caller,
)
from accounts.models import User
from checkpoints import selectors, services
from checkpoints.models import Checkpoint, CheckpointStatus, CheckpointType
from esd import openapi
from esd.exceptions import EsdError
from esd.filters import filtered
from esd.responses import esd_response
from esd.views import EsdAPIView

from . import schemas
from .filters import CheckpointFilter
from .serializers import checkpoint_data, checkpoint_item

UNKNOWN_USER = 'user: "{name}" not exist'
MAX_PER_PAGE = 1000


def _positive_int(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise EsdError(400, f"{name} must be a whole number from 1 to {maximum}")
    return int(raw)


class CheckpointsView(EsdAPIView):
    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {
        "POST": schemas.CHECKPOINT_CREATE,
        "DELETE": schemas.CHECKPOINT_DELETE,
    }

    def requires_caller(self, request: Request) -> bool:
        # ESD 1.4.0 took POST's caller from params.creator, and DELETE took no user at all; esd-1.4 mode keeps both
        # for the WebUI (DELETE with the key alone acts as the administrator).
        if request.method == "DELETE":
            return not key_alone_accepted()
        return not (request.method == "POST" and key_alone_accepted())

    @extend_schema(
        operation_id="checkpoints_list",
        summary="List checkpoints the caller may see",
        parameters=[
            OpenApiParameter("status", str, many=True, enum=list(CheckpointStatus.values)),
            OpenApiParameter("types", str, many=True, enum=list(CheckpointType.values)),
            OpenApiParameter("roles", str, many=True, description="Only checkpoints visible to one of these."),
            OpenApiParameter("username", str, description="Whose view to compute (the caller unless user:all)."),
            OpenApiParameter("page", int, description="1-based page, default 1."),
            OpenApiParameter("per_page", int, description=f"Page size, default 10, at most {MAX_PER_PAGE}."),
        ],
        responses={200: openapi.envelope(schemas.CHECKPOINT_LIST), **openapi.errors(400, 401, 403)},
        tags=["checkpoints"],
    )
    def get(self, request: Request) -> Response:
        viewer = request_caller(request, unknown=UNKNOWN_USER)
        require(viewer, "checkpoint.list")
        subject = list_subject(request, viewer, unknown=UNKNOWN_USER)
        page = _positive_int(request, "page", 1, 1_000_000)
        per_page = _positive_int(request, "per_page", 10, MAX_PER_PAGE)
        checkpoints = filtered(
            CheckpointFilter, request.query_params, selectors.checkpoint_list(viewer=viewer, subject=subject)
        )
        total = checkpoints.count()
        shown = list(checkpoints[(page - 1) * per_page : page * per_page])
        grants.attach_visibility(shown)
        data = {
            "page": page,
            "per_page": per_page,
            "pages": math.ceil(total / per_page),
            "total": total,
            "checkpoints": [checkpoint_item(checkpoint) for checkpoint in shown],
        }
        return Response({"statusCode": 200, "message": "OK", "data": data})

    @extend_schema(
        operation_id="checkpoints_create",
        summary="Upload checkpoints: by URL (202, downloaded in the background) or by multipart upload (201)",
        request=openapi.request_body(schemas.CHECKPOINT_CREATE),
        responses={
            201: openapi.envelope(schemas.CHECKPOINT_CREATED, message="Created"),
            202: openapi.envelope(message="Checkpoint creation in progress, please check later"),
            **openapi.errors(400, 401, 403, 413),
        },
        tags=["checkpoints"],
    )
    def post(self, request: Request) -> Response:
        body = self.body
        params = body["params"]
        actor = acting_user(
            request, named=params.get("creator"), field="params.creator", unknown=UNKNOWN_USER,
            required="user has no permissions to create a model",
        )  # fmt: skip
        if body.get("urls"):
            services.checkpoint_create_from_urls(
                actor=actor, type=body["checkpoint_type"], urls=body["urls"], params=params
            )
            return esd_response(202, "Checkpoint creation in progress, please check later")
        if not body.get("filenames"):
            raise EsdError(400, '[object has missing required properties (["urls"] or ["filenames"])]')
        checkpoint, urls = services.checkpoint_create_multipart(
            actor=actor,
            type=body["checkpoint_type"],
            filenames=[(item["filename"], item["parts_number"]) for item in body["filenames"]],
            params=params,
        )
        return esd_response(201, "Created", {"checkpoint": checkpoint_data(checkpoint), "s3PresignUrl": urls})

    @extend_schema(
        operation_id="checkpoints_delete",
        summary="Delete checkpoints and their files (all of them or, when one is refused, none)",
        request=openapi.request_body(schemas.CHECKPOINT_DELETE),
        responses={204: None, **openapi.errors(400, 401, 403, 413)},
        tags=["checkpoints"],
    )
    def delete(self, request: Request) -> Response:
        actor = key_holder_or_caller(request, unknown=UNKNOWN_USER)
        found = [
            checkpoint
            for checkpoint_id in dict.fromkeys(self.body["checkpoint_id_list"])
            if (checkpoint := selectors.checkpoint_get(viewer=actor, checkpoint_id=checkpoint_id)) is not None
        ]
        services.checkpoint_delete_many(actor=actor, checkpoints=found)
        return esd_response(204)


class CheckpointView(EsdAPIView):
    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"PUT": schemas.CHECKPOINT_UPDATE}

    def requires_caller(self, request: Request) -> bool:
        # The ESD WebUI completes its own upload with only the API key; esd-1.4 mode then acts as the creator.
        return not key_alone_accepted()

    def _actor(self, request: Request, checkpoint_id: str) -> tuple[User, Checkpoint]:
        return owner_or_caller(
            request,
            find=lambda viewer: selectors.checkpoint_get(viewer=viewer, checkpoint_id=checkpoint_id),
            not_found=EsdError(404, f"checkpoint not found with id {checkpoint_id}"),
            unknown=UNKNOWN_USER,
        )

    @extend_schema(
        operation_id="checkpoints_update",
        summary="Complete a multipart upload, change the status (Active/Disabled), or rename",
        request=openapi.request_body(schemas.CHECKPOINT_UPDATE),
        responses={
            200: openapi.envelope(schemas.CHECKPOINT_UPDATED),
            202: openapi.envelope(message="rename is processing, please wait"),
            **openapi.errors(400, 401, 403, 404, 413),
        },
        tags=["checkpoints"],
    )
    def put(self, request: Request, checkpoint_id: str) -> Response:
        actor, checkpoint = self._actor(request, checkpoint_id)
        body = self.body
        if "status" in body:
            before = checkpoint_data(checkpoint)
            services.checkpoint_update_status(
                actor=actor, checkpoint=checkpoint, status=body["status"], tags=body.get("multi_parts_tags")
            )
            return esd_response(200, "OK", {"checkpoint": before})
        if "name" in body:
            if services.checkpoint_rename(actor=actor, checkpoint=checkpoint, name=body["name"]):
                return esd_response(202, "rename is processing, please wait")
            return esd_response(200, "no need to update")
        return esd_response(200, "OK")
