"""The endpoint routes (esd-behaviour.md §8): creation rules and messages, list shapes, deletion."""

import pytest

from endpoints import services
from endpoints.models import Endpoint, EndpointStatus

BODY = {
    "endpoint_name": "api-test",
    "endpoint_type": "Async",
    "instance_type": "ml.g5.2xlarge",
    "initial_instance_count": 1,
    "autoscaling_enabled": True,
    "assign_to_roles": ["IT Operator"],
    "creator": "admin",
}


@pytest.fixture
def admin_token(admin_user, token_for):
    return token_for(admin_user)


def create(esd, token, **changes):
    return esd.call("POST", "endpoints", {**BODY, **changes}, token=token)


def test_create_answers_202_creating(esd, admin_token):
    response = create(esd, admin_token)
    assert response.status == 202
    assert response.body["message"] == "Endpoint deployment started: esd-async-api-test"
    data = response.body["data"]
    assert data["endpoint_status"] == "Creating"
    assert data["endpoint_name"] == "esd-async-api-test"
    assert data["current_instance_count"] == "0"
    assert data["max_instance_number"] == 1  # echoed as sent
    assert (data["status"], data["endTime"], data["error"]) == (None, None, None)
    assert data["owner_group_or_role"] == ["IT Operator"]
    assert len(data["EndpointDeploymentJobId"]) == 36


def test_names_follow_esd(esd, admin_token, make_role):
    make_role("byoc", ["sagemaker_endpoint:all"])
    response = create(esd, admin_token, endpoint_type="Real-time", autoscaling_enabled=False,
                      assign_to_roles=["byoc"], endpoint_name=None)  # fmt: skip
    assert response.status == 400  # endpoint_name, when given, must be a string
    body = {key: value for key, value in BODY.items() if key != "endpoint_name"}
    body.update(endpoint_type="Real-time", autoscaling_enabled=False, assign_to_roles=["byoc"])
    response = esd.call("POST", "endpoints", body, token=admin_token)
    name = response.body["data"]["endpoint_name"]
    assert name == f"esd-real-time-{response.body['data']['EndpointDeploymentJobId'][:7]}"


def test_a_numeric_string_count_is_accepted(esd, admin_token):
    response = create(esd, admin_token, initial_instance_count="2")
    assert response.status == 202
    assert Endpoint.objects.get().initial_instance_count == 2


@pytest.mark.parametrize(
    ("changes", "status", "fragment"),
    [
        ({"endpoint_type": "Serverless"}, 400, "Serverless endpoint is not supported yet"),
        ({"endpoint_type": "Batch"}, 400, "not found in enum"),
        ({"endpoint_type": "Real-time"}, 400, "Autoscaling is not supported for real-time endpoint"),
        ({"instance_type": "p4d.huge"}, 400, "unknown instance_type"),
        ({"initial_instance_count": 0}, 400, "lower than the required minimum"),
        ({"initial_instance_count": "0"}, 400, "does not match input string"),
        ({"initial_instance_count": 1.5}, 400, "instance type (number)"),
        ({"initial_instance_count": 65}, 400, "initial_instance_count must be from 1 to 64"),
        ({"assign_to_roles": ["ghost"]}, 400, 'role "ghost" not exist'),
        ({"assign_to_roles": []}, 400, "array is too short"),
        ({"endpoint_name": "bad_name!"}, 400, "does not match input string"),
        ({"endpoint_name": "x" * 21}, 400, "maximum allowed: 20"),
        ({"creator": "ghost"}, 400, 'user: "ghost" not exist'),
        ({"extra": 1}, 400, "not allowed"),
    ],
)
def test_bad_creations(esd, admin_token, changes, status, fragment):
    response = create(esd, admin_token, **changes)
    assert response.status == status
    assert fragment in response.body["message"]
    assert not Endpoint.objects.exists()


def test_one_endpoint_per_role_and_unique_names(esd, admin_token, make_role):
    assert create(esd, admin_token).status == 202
    again = create(esd, admin_token, endpoint_name="other")
    assert again.body == {
        "statusCode": 400,
        "message": "role [IT Operator] has a valid endpoint already, not allow to have another one",
    }
    make_role("byoc", ["sagemaker_endpoint:all"])
    clash = create(esd, admin_token, assign_to_roles=["byoc"])
    assert "Cannot create already existing model" in clash.body["message"]


def test_creating_needs_sagemaker_endpoint_create(esd, make_user, token_for):
    user = make_user("viewer", ["sagemaker_endpoint:list"])
    response = create(esd, token_for(user), creator="viewer", assign_to_roles=["role-viewer"])
    assert response.body == {"statusCode": 403, "message": "Creator viewer has no permission to create Sagemaker"}


def test_list_shapes_and_visibility(esd, admin_token, make_user, token_for, make_role):
    create(esd, admin_token)
    listed = esd.call("GET", "endpoints", token=admin_token).body["data"]["endpoints"]
    [item] = listed
    assert item["current_instance_count"] == "0"
    assert item["max_instance_number"] == "1"
    assert item["endpoint_status"] == "Creating"
    assert item["startTime"].count(".") == 1 and len(item["startTime"].split(".")[1]) == 6
    make_role("other", ["sagemaker_endpoint:list"])
    stranger = make_user("stranger", roles=["other"])
    assert esd.call("GET", "endpoints", token=token_for(stranger)).body["data"]["endpoints"] == []
    operator = make_user("operator2", ["sagemaker_endpoint:list"], roles=["IT Operator"])
    seen = esd.call("GET", "endpoints", token=token_for(operator)).body["data"]["endpoints"]
    assert [item["endpoint_name"] for item in seen] == ["esd-async-api-test"]
    nothing = make_user("nothing")
    assert esd.call("GET", "endpoints", token=token_for(nothing)).body["data"]["endpoints"] == []
    by_id = esd.call("GET", "endpoints", token=admin_token, query={"endpointDeploymentJobId": "nope"})
    assert by_id.body["data"]["endpoints"] == []


def test_delete_without_workers_removes_at_once(esd, admin_token):
    create(esd, admin_token)
    response = esd.call(
        "DELETE", "endpoints", {"endpoint_name_list": ["esd-async-api-test", "test"], "username": "admin"},
        token=admin_token,
    )  # fmt: skip
    assert (response.status, response.raw) == (204, b"")
    assert esd.call("GET", "endpoints", token=admin_token).body["data"]["endpoints"] == []
    assert not Endpoint.objects.exists()


def test_delete_accepts_the_seed_documents_field_name(esd, admin_token):
    create(esd, admin_token)
    response = esd.call("DELETE", "endpoints", {"delete_endpoint_list": ["esd-async-api-test"]}, token=admin_token)
    assert response.status == 204
    assert not Endpoint.objects.exists()


def test_delete_validation_and_permissions(esd, admin_token, make_user, token_for):
    assert (
        "endpoint_name_list"
        in esd.call("DELETE", "endpoints", {"username": "admin"}, token=admin_token).body["message"]
    )
    response = esd.call("DELETE", "endpoints", {"endpoint_name_list": ["x"], "username": "ghost"}, token=admin_token)
    assert response.body == {"statusCode": 400, "message": 'user: "ghost" not exist'}
    weak = make_user("weak")
    response = esd.call("DELETE", "endpoints", {"endpoint_name_list": ["x"]}, token=token_for(weak))
    assert response.body == {"statusCode": 403, "message": "User weak has no permission to delete a Sagemaker endpoint"}


def test_delete_with_a_live_worker_drains_first(esd, admin_token):
    create(esd, admin_token)
    endpoint = Endpoint.objects.get()
    worker = services.worker_register(endpoint=endpoint, hostname="gpu-1", pid=1, device="cuda:0")
    esd.call("DELETE", "endpoints", {"endpoint_name_list": [endpoint.name]}, token=admin_token)
    endpoint.refresh_from_db()
    assert endpoint.status == EndpointStatus.DELETING
    assert esd.call("GET", "endpoints", token=admin_token).body["data"]["endpoints"] == []
    assert services.worker_heartbeat(worker=worker) is False  # told to drain
    services.worker_deregister(worker=worker)
    assert not Endpoint.objects.exists()  # the last worker out removes the row


def test_only_a_roles_members_may_give_it_an_endpoint(esd, make_role, make_user, token_for):
    make_role("team-a", ["sagemaker_endpoint:create", "sagemaker_endpoint:list"])
    make_role("team-b", ["inference:create"])
    squatter = token_for(make_user("sam", roles=["team-a"]))
    refused = create(esd, squatter, endpoint_name="squat", assign_to_roles=["team-a", "team-b"], creator="sam")
    assert refused.status == 403
    assert refused.body["message"].startswith("sam may assign an endpoint only to its own roles, not to [team-b]")
    assert not Endpoint.objects.exists()
    assert create(esd, squatter, endpoint_name="mine", assign_to_roles=["team-a"], creator="sam").status == 202
