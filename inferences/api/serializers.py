"""Inference job records as ESD wrote them (esd-behaviour.md §9.1, §9.8, §9.9), plus progress and timings."""

from typing import Any

from esd.responses import esd_time
from esd.storage import get_storage
from inferences.models import InferenceJob

URL_LIFETIME = 3600


def job_params(job: InferenceJob) -> dict[str, Any]:
    storage = get_storage()
    params: dict[str, Any] = {
        "input_body_s3": storage.uri(job.input_key),
        "input_body_presign_url": job.payload_url,
        "used_models": job.used_models,
    }
    if job.endpoint_name:
        params["sagemaker_inference_endpoint_id"] = str(job.endpoint_id) if job.endpoint_id else None
        params["sagemaker_inference_endpoint_name"] = job.endpoint_name
        params["sagemaker_inference_instance_type"] = job.instance_type
    return params


def job_record(job: InferenceJob) -> dict[str, Any]:
    """Every record key, null-filled (the list's shape)."""
    return {
        "InferenceJobId": str(job.id),
        "status": job.status,
        "taskType": job.task_type,
        "inference_type": job.inference_type,
        "owner_group_or_role": job.owner_group_or_role,
        "inference_info_name": job.result_key if job.status == "succeed" else None,
        "createTime": esd_time(job.created_at),
        "startTime": esd_time(job.start_time),
        "completeTime": esd_time(job.complete_time),
        "image_names": job.image_names,
        "sagemakerRaw": job.error or None,
        "params": job_params(job),
        "progress": round(job.progress, 4),
        "cancelled": job.cancelled,
        "timings": job.timings,
        "ignored_parameters": job.ignored_parameters,
    }


def image_urls(job: InferenceJob) -> list[str]:
    """Presigned GET URLs of the job's images, in `image_names` order."""
    storage = get_storage()
    return [storage.presign_get(job.result_folder + name, expires=URL_LIFETIME) for name in job.image_names]


def job_detail(job: InferenceJob) -> dict[str, Any]:
    """GET /inferences/{id}: the record with presigned GET URLs of the images and of the result JSON."""
    storage = get_storage()
    data = job_record(job)
    data["img_presigned_urls"] = image_urls(job)
    data["output_presigned_urls"] = [storage.presign_get(job.result_key, expires=URL_LIFETIME)]
    return data
