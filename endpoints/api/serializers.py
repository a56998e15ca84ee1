"""Endpoint records as ESD wrote them (esd-behaviour.md §8.1): counts as strings in lists."""

from typing import Any

from endpoints.models import Endpoint
from esd.responses import esd_time


def endpoint_data(endpoint: Endpoint, *, max_instance_number: Any = None) -> dict[str, Any]:
    live = getattr(endpoint, "live_count", 0)
    return {
        "EndpointDeploymentJobId": str(endpoint.pk),
        "endpoint_name": endpoint.name,
        "endpoint_type": endpoint.endpoint_type,
        "endpoint_status": endpoint.status,
        "status": None,
        "instance_type": endpoint.instance_type,
        "autoscaling": endpoint.autoscaling,
        "max_instance_number": (
            max_instance_number if max_instance_number is not None else str(endpoint.initial_instance_count)
        ),
        "current_instance_count": str(live),
        "startTime": esd_time(endpoint.created_at),
        "endTime": esd_time(endpoint.end_time),
        "error": endpoint.error or None,
        "owner_group_or_role": endpoint.owner_group_or_role,
    }
