"""The inference routes (esd-behaviour.md §9): create, start, get, list, delete, and cancel (beyond ESD).
Thin: validate, call a service or selector, render."""

from typing import Any, ClassVar

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.access import require
from accounts.api.callers import acting_user, key_alone_accepted, list_subject, owner_or_caller, request_caller
from accounts.models import User
from esd import openapi
from esd.errors import Refused
from esd.exceptions import EsdError
from esd.filters import filtered
from esd.responses import esd_response, gateway_response
from esd.storage import get_storage
from esd.views import EsdAPIView
from inferences import selectors, services
from inferences.models import InferenceJob, InferenceType

from . import schemas
from .filters import InferenceFilter
from .serializers import job_detail, job_record

UNKNOWN_USER = 'user: "{name}" not exist'
MAX_LIMIT = 1000


def job_for(request: Request, job_id: str) -> tuple[User, InferenceJob]:
    return owner_or_caller(
        request,
        find=lambda viewer: selectors.inference_get(viewer=viewer, job_id=job_id),
        not_found=services.not_found(job_id),
        unknown=UNKNOWN_USER,
    )


class InferencesView(EsdAPIView):
    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {
        "POST": schemas.INFERENCE_CREATE,
        "DELETE": schemas.INFERENCE_DELETE,
    }

    def requires_caller(self, request: Request) -> bool:
        return not (key_alone_accepted() and request.method in ("POST", "DELETE"))

    @extend_schema(
        operation_id="inferences_list",
        summary="List inference jobs, newest first (keyset pagination with limit / exclusive_start_key)",
        parameters=[
            OpenApiParameter("username", str, description="Whose jobs (the caller unless user:all)."),
            OpenApiParameter("status", str, enum=["created", "inprogress", "succeed", "failed"]),
            OpenApiParameter("task_type", str),
            OpenApiParameter("endpoint", str, description="Endpoint name."),
            OpenApiParameter("checkpoint", str, description="A model file name used by the job."),
            OpenApiParameter("start_time", str, description="Created at or after (ISO 8601)."),
            OpenApiParameter("end_time", str, description="Created at or before (ISO 8601)."),
            OpenApiParameter("limit", int, description=f"Page size, 1..{MAX_LIMIT}; -1 or absent: all."),
            OpenApiParameter("exclusive_start_key", str, description="last_evaluated_key of the previous page."),
        ],
        responses={200: openapi.envelope(schemas.INFERENCE_LIST), **openapi.errors(400, 401, 403)},
        tags=["inferences"],
    )
    def get(self, request: Request) -> Response:
        viewer = request_caller(request, unknown=UNKNOWN_USER)
        subject = list_subject(request, viewer, unknown=UNKNOWN_USER)
        require(viewer, "inference.list")
        query = request.query_params
        limit: int | None = None
        raw_limit = query.get("limit")
        if raw_limit and raw_limit != "-1":
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
                raise EsdError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, or -1")
            limit = int(raw_limit)
        jobs = filtered(InferenceFilter, query, selectors.inference_list(viewer=viewer, subject=subject))
        jobs_page, last_key = selectors.keyset_page(jobs, limit=limit, start_key=query.get("exclusive_start_key"))
        data: dict[str, Any] = {"inferences": [job_record(job) for job in jobs_page]}
        if limit is not None:
            data["last_evaluated_key"] = last_key
        return esd_response(200, data=data)

    @extend_schema(
        operation_id="inferences_create",
        summary="Create an inference job; PUT its api_param.json to the returned URL, then start it",
        request=openapi.request_body(schemas.INFERENCE_CREATE),
        responses={
            201: openapi.envelope(schemas.INFERENCE_CREATED, message="Created"),
            **openapi.errors(400, 401, 403, 413),
        },
        tags=["inferences"],
    )
    def post(self, request: Request) -> Response:
        body = self.body
        actor = acting_user(
            request, named=body.get("user_id"), field="user_id", unknown=UNKNOWN_USER,
            required="user_id or sagemaker_endpoint_name is required",
        )  # fmt: skip
        job = services.inference_create(
            actor=actor,
            task_type=body["task_type"],
            inference_type=body["inference_type"],
            models=body["models"],
            endpoint_name=body.get("sagemaker_endpoint_name"),
        )
        inference: dict[str, Any] = {
            "id": str(job.id),
            "type": job.task_type,
            "api_params_s3_location": get_storage().uri(job.payload_key),
            "api_params_s3_upload_url": job.payload_url,
        }
        if job.used_models:
            inference["models"] = [
                {"id": entries[0]["id"], "name": [entry["model_name"] for entry in entries], "type": model_type}
                for model_type, entries in job.used_models.items()
            ]
        return esd_response(201, "Created", {"inference": inference})

    @extend_schema(
        operation_id="inferences_delete",
        summary="Delete inference jobs with their payloads and outputs",
        request=openapi.request_body(schemas.INFERENCE_DELETE),
        responses={204: None, **openapi.errors(400, 401, 403, 413)},
        tags=["inferences"],
    )
    def delete(self, request: Request) -> Response:
        ids = list(dict.fromkeys(self.body["inference_id_list"]))
        jobs: list[tuple[User, InferenceJob]] = []
        for job_id in ids:
            try:
                jobs.append(job_for(request, job_id))
            except Refused:
                continue  # unknown or invisible ids are skipped, as ESD did
        for actor, job in jobs:
            services.inference_delete_many(actor=actor, jobs=[job])
        return esd_response(204)


class InferenceView(EsdAPIView):
    def requires_caller(self, request: Request) -> bool:
        return not key_alone_accepted()

    @extend_schema(
        operation_id="inference_get",
        summary="One inference job with presigned URLs of its images and result JSON, progress and timings",
        responses={200: openapi.envelope(schemas.JOB), **openapi.errors(401, 403, 404)},
        tags=["inferences"],
    )
    def get(self, request: Request, job_id: str) -> Response:
        _, job = job_for(request, job_id)
        return esd_response(200, data=job_detail(job))


class InferenceStartView(EsdAPIView):
    def requires_caller(self, request: Request) -> bool:
        return not key_alone_accepted()

    @extend_schema(
        operation_id="inference_start",
        summary="Start a created job: Async answers 202 at once; Real-time waits and answers the finished job",
        request=None,
        responses={
            200: openapi.envelope(schemas.JOB),
            202: openapi.envelope(schemas.INFERENCE_STARTED, message="Accepted"),
            **openapi.errors(400, 401, 403, 404, 504),
        },
        tags=["inferences"],
    )
    def put(self, request: Request, job_id: str) -> Response:
        actor, job = job_for(request, job_id)
        job = services.inference_start(actor=actor, job=job)
        if job.inference_type != InferenceType.REAL_TIME:
            data = {
                "inference_id": str(job.id),
                "status": job.status,
                "endpoint_name": job.endpoint_name,
                "output_path": get_storage().uri(job.result_folder),
            }
            return esd_response(202, "Accepted", {"inference": data})
        finished = services.inference_wait(job=job, timeout=settings.ESD_REALTIME_TIMEOUT)
        if finished is None:
            return gateway_response(504, "Endpoint request timed out")
        if finished.status == "failed":
            raise EsdError(400, finished.error or "inference failed")
        return esd_response(200, data=job_detail(finished))


class InferenceCancelView(EsdAPIView):
    def requires_caller(self, request: Request) -> bool:
        return not key_alone_accepted()

    @extend_schema(
        operation_id="inference_cancel",
        summary="Cancel a job (beyond ESD): a queued job fails at once, a running one at its next step",
        request=None,
        responses={200: openapi.envelope(schemas.JOB), **openapi.errors(400, 401, 403, 404)},
        tags=["inferences"],
    )
    def put(self, request: Request, job_id: str) -> Response:
        actor, job = job_for(request, job_id)
        job = services.inference_cancel(actor=actor, job=job)
        return esd_response(200, data=job_detail(job))
