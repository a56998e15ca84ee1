"""The endpoint routes: GET/POST/DELETE /endpoints. Thin: validate, call, render."""

from typing import Any, ClassVar

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.callers import acting_user, list_subject, request_caller
from endpoints import selectors, services
from esd import openapi
from esd.exceptions import EsdError
from esd.responses import esd_response
from esd.views import EsdAPIView

from . import schemas
from .serializers import endpoint_data

UNKNOWN_USER = 'user: "{name}" not exist'


class EndpointsView(EsdAPIView):
    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {
        "POST": schemas.ENDPOINT_CREATE,
        "DELETE": schemas.ENDPOINT_DELETE,
    }

    @extend_schema(
        operation_id="endpoints_list",
        summary="List endpoints with their live worker count",
        parameters=[
            OpenApiParameter("username", str, description="Whose view to compute (the caller unless user:all)."),
            OpenApiParameter("endpointDeploymentJobId", str, description="Only this endpoint."),
        ],
        responses={200: openapi.envelope(schemas.ENDPOINT_LIST), **openapi.errors(400, 401, 403)},
        tags=["endpoints"],
    )
    def get(self, request: Request) -> Response:
        viewer = request_caller(request, unknown=UNKNOWN_USER)
        subject = list_subject(request, viewer, unknown=UNKNOWN_USER)
        endpoints = selectors.endpoint_list(
            viewer=viewer, subject=subject, endpoint_id=request.query_params.get("endpointDeploymentJobId")
        )
        return esd_response(200, data={"endpoints": [endpoint_data(endpoint) for endpoint in endpoints]})

    @extend_schema(
        operation_id="endpoints_create",
        summary="Create an endpoint (a worker pool); it is InService once a worker serves it",
        request=openapi.request_body(schemas.ENDPOINT_CREATE),
        responses={
            202: openapi.envelope(schemas.ENDPOINT_CREATED, message="Endpoint deployment started: esd-async-NAME"),
            **openapi.errors(400, 401, 403, 413),
        },
        tags=["endpoints"],
    )
    def post(self, request: Request) -> Response:
        body = self.body
        actor = acting_user(request, named=body["creator"], field="creator", unknown=UNKNOWN_USER)
        count = int(body["initial_instance_count"])
        endpoint = services.endpoint_create(
            actor=actor,
            suffix=body.get("endpoint_name"),
            endpoint_type=body["endpoint_type"],
            instance_type=body["instance_type"],
            count=count,
            autoscaling=body["autoscaling_enabled"],
            roles=body["assign_to_roles"],
            image=body.get("custom_docker_image_uri", ""),
        )
        data = endpoint_data(endpoint, max_instance_number=body["initial_instance_count"])
        return esd_response(202, f"Endpoint deployment started: {endpoint.name}", data)

    @extend_schema(
        operation_id="endpoints_delete",
        summary="Delete endpoints: their workers finish the job in hand and exit",
        request=openapi.request_body(schemas.ENDPOINT_DELETE),
        responses={204: None, **openapi.errors(400, 401, 403, 413)},
        tags=["endpoints"],
    )
    def delete(self, request: Request) -> Response:
        body = self.body
        names = body.get("endpoint_name_list") or body.get("delete_endpoint_list")
        if not names:
            raise EsdError(400, '[object has missing required properties (["endpoint_name_list"])]')
        actor = acting_user(request, named=body.get("username"), field="username", unknown=UNKNOWN_USER)
        visible = {endpoint.name: endpoint for endpoint in selectors.endpoint_list(viewer=actor, subject=actor)}
        services.endpoint_delete_many(actor=actor, endpoints=[visible[name] for name in dict.fromkeys(names)
                                                              if name in visible])  # fmt: skip
        return esd_response(204)
