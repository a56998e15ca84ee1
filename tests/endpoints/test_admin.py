"""The endpoint admin: list with live workers and backlog, create through the service, drain on delete."""

import pytest

from endpoints import services
from endpoints.models import Endpoint


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_create_and_list(admin_client):
    response = admin_client.post(
        "/admin/endpoints/endpoint/add/",
        {"suffix": "gpu", "endpoint_type": "Async", "instance_type": "ml.g5.2xlarge", "initial_instance_count": 2,
         "autoscaling": "on", "roles": ["IT Operator"]},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint = Endpoint.objects.get()
    assert (endpoint.name, endpoint.autoscaling, endpoint.owner_group_or_role) == (
        "esd-async-gpu",
        True,
        ["IT Operator"],
    )
    services.worker_register(endpoint=endpoint, hostname="gpu-host-1", pid=7, device="cuda:0")
    page = admin_client.get("/admin/endpoints/endpoint/").content.decode()
    assert "esd-async-gpu" in page and "InService" in page
    detail = admin_client.get(f"/admin/endpoints/endpoint/{endpoint.pk}/change/").content.decode()
    assert "gpu-host-1" in detail and "cuda:0" in detail


def test_refusals_show_on_the_form(admin_client):
    response = admin_client.post(
        "/admin/endpoints/endpoint/add/",
        {"endpoint_type": "Real-time", "instance_type": "cpu", "initial_instance_count": 1, "autoscaling": "on",
         "roles": ["IT Operator"]},
    )  # fmt: skip
    assert response.status_code == 200
    assert "Autoscaling is not supported for real-time endpoint" in response.content.decode()
    assert not Endpoint.objects.exists()


def test_delete_action(admin_client, admin_user):
    endpoint = services.endpoint_create(
        actor=admin_user, suffix="bye", endpoint_type="Async", instance_type="cpu", count=1, autoscaling=False,
        roles=["IT Operator"],
    )  # fmt: skip
    admin_client.post("/admin/endpoints/endpoint/", {"action": "delete_endpoints", "_selected_action": [endpoint.pk]})
    assert not Endpoint.objects.exists()
