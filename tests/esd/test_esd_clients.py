"""What unmodified ESD 1.4.0 clients send and expect, in esd-1.4 mode with an API key: the routes they call with
the key alone, SageMaker's capacity error, and an endpoint that is gone from the list once deleted."""

import pytest

from checkpoints import services as checkpoint_services
from checkpoints.models import Checkpoint
from endpoints import services as endpoint_services
from endpoints.models import Endpoint, EndpointStatus, Worker
from tests.helpers import safetensors_bytes

KEY = "esd-client-key-0123456789"
ONLY_KEY = {"x-api-key": KEY}
FORBIDDEN = {"message": "Forbidden"}


@pytest.fixture
def esd_client_mode(esd_mode):
    esd_mode.ESD_API_KEY = KEY
    return esd_mode


def as_admin() -> dict[str, str]:
    return {**ONLY_KEY, "username": "admin"}


# --- 1. the routes ESD 1.4.0 served with the API key alone ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "good", "bad"),
    [
        ("roles", {"role_name_list": ["temp"]}, {"role_name_list": []}),
        ("checkpoints", {"checkpoint_id_list": ["x"]}, {"checkpoint_id_list": "x"}),
        ("inferences", {"inference_id_list": ["x"]}, {"inference_id_list": []}),
    ],
)
def test_key_only_deletes_check_the_key_then_the_body_then_act(esd, esd_client_mode, admin_user, path, good, bad):
    # (1) the key, before anything else, even with a bad body
    for headers in ({}, {"x-api-key": "wrong"}):
        for body in (good, bad):
            answer = esd.call("DELETE", path, body, headers=headers)
            assert (answer.status, answer.body) == (403, FORBIDDEN), (headers, body)
    # (2) the body's schema, with no user at all
    answer = esd.call("DELETE", path, bad, headers=ONLY_KEY)
    assert answer.status == 400 and answer.body["statusCode"] == 400, answer.body
    # (3) with the key alone and a good body, the delete is done (as the administrator)
    assert esd.call("DELETE", path, good, headers=ONLY_KEY).status == 204


def test_key_only_delete_roles_and_checkpoints_remove_them(esd, esd_client_mode, admin_user, make_role, store):
    make_role("temp", ["train:list"], creator="someone")
    checkpoint = checkpoint_services.checkpoint_create_from_upload(
        actor=admin_user, type="Lora", name="gone.safetensors", chunks=iter([safetensors_bytes()])
    )
    assert esd.call("DELETE", "roles", {"role_name_list": ["temp"]}, headers=ONLY_KEY).status == 204
    assert (
        esd.call("DELETE", "checkpoints", {"checkpoint_id_list": [str(checkpoint.pk)]}, headers=ONLY_KEY).status == 204
    )
    listed = esd.call("GET", "roles", headers=as_admin(), query={"role": "temp"})
    assert listed.body["data"]["roles"] == []
    assert not Checkpoint.objects.filter(pk=checkpoint.pk).exists()
    assert store.list_keys(f"{checkpoint.folder}/") == []


def test_key_only_routes_keep_their_rules(esd, esd_client_mode, admin_user):
    answer = esd.call("DELETE", "roles", {"role_name_list": ["IT Operator"]}, headers=ONLY_KEY)
    assert answer.body == {"statusCode": 400, "message": "cannot delete default role"}


def test_a_named_user_still_acts_as_itself(esd, esd_client_mode, admin_user, make_user, make_role):
    make_role("temp", ["train:list"])
    make_user("weak")
    answer = esd.call("DELETE", "roles", {"role_name_list": ["temp"]}, headers={**ONLY_KEY, "username": "weak"})
    assert answer.status == 403


def test_token_mode_stays_strict(esd, settings, admin_user, make_role):
    settings.ESD_API_KEY = KEY
    make_role("temp", ["train:list"])
    for path, body in (("roles", {"role_name_list": ["temp"]}), ("checkpoints", {"checkpoint_id_list": ["x"]})):
        assert esd.call("DELETE", path, body, headers=ONLY_KEY).status == 401


def test_without_a_deployment_key_nobody_is_the_key_holder(esd, esd_mode, admin_user, make_role):
    make_role("temp", ["train:list"])
    assert esd.call("DELETE", "roles", {"role_name_list": ["temp"]}).body == {"message": "Unauthorized"}


# --- 2. capacity errors ---------------------------------------------------------------------------------------------


def endpoint_body(**changes):
    body = {
        "endpoint_type": "Async",
        "instance_type": "ml.g5.2xlarge",
        "initial_instance_count": 1,
        "autoscaling_enabled": False,
        "assign_to_roles": ["IT Operator"],
        "creator": "admin",
    }
    return {**body, **changes}


@pytest.mark.parametrize("count", [65, 1000, "1000", 999_999])
def test_counts_over_the_limit_are_resource_limit_exceeded(esd, esd_client_mode, admin_user, count):
    answer = esd.call("POST", "endpoints", endpoint_body(initial_instance_count=count), headers=as_admin())
    assert answer.status == 400
    assert "ResourceLimitExceeded" in answer.body["message"]
    assert not Endpoint.objects.exists()


def test_the_sum_over_endpoints_is_capped(esd, esd_client_mode, admin_user, make_role):
    esd_client_mode.ESD_MAX_TOTAL_INSTANCES = 10
    make_role("second", ["inference:all"])
    assert esd.call("POST", "endpoints", endpoint_body(initial_instance_count=8), headers=as_admin()).status == 202
    answer = esd.call(
        "POST", "endpoints", endpoint_body(initial_instance_count=3, assign_to_roles=["second"]), headers=as_admin()
    )
    assert answer.status == 400
    assert "ResourceLimitExceeded" in answer.body["message"] and "current utilization of 8" in answer.body["message"]
    fits = endpoint_body(initial_instance_count=2, assign_to_roles=["second"])
    assert esd.call("POST", "endpoints", fits, headers=as_admin()).status == 202


def test_instance_quotas_per_type_answer_in_sagemakers_words(esd, esd_client_mode, admin_user, make_role):
    # Issue 29.8: SageMaker's account quotas per instance type, with the message ESD clients match on
    esd_client_mode.ESD_INSTANCE_QUOTAS = {"ml.g5.2xlarge": 8, "ml.g4dn.16xlarge": 0}
    make_role("second", ["inference:all"])
    make_role("third", ["inference:all"])
    assert esd.call("POST", "endpoints", endpoint_body(initial_instance_count=6), headers=as_admin()).status == 202
    over = endpoint_body(initial_instance_count=3, assign_to_roles=["second"])
    answer = esd.call("POST", "endpoints", over, headers=as_admin())
    assert answer.body == {
        "statusCode": 400,
        "message": "ResourceLimitExceeded: The account-level service limit 'ml.g5.2xlarge for endpoint usage' is 8 "
        "Instances, with current utilization of 6 Instances and a request delta of 3 Instances. Please use AWS "
        "Service Quotas to request an increase for this quota.",
    }
    none_allowed = endpoint_body(instance_type="ml.g4dn.16xlarge", assign_to_roles=["second"])
    assert "is 0 Instances" in esd.call("POST", "endpoints", none_allowed, headers=as_admin()).body["message"]
    # a type not listed keeps ESD_MAX_INSTANCES per endpoint; the quota leaves room for 2 more
    unlisted = endpoint_body(instance_type="ml.g4dn.xlarge", initial_instance_count=20, assign_to_roles=["third"])
    assert esd.call("POST", "endpoints", unlisted, headers=as_admin()).status == 202
    fits = endpoint_body(initial_instance_count=2, assign_to_roles=["second"])
    assert esd.call("POST", "endpoints", fits, headers=as_admin()).status == 202


# --- 3. deletion ----------------------------------------------------------------------------------------------------


def test_a_deleted_endpoint_leaves_the_list_and_frees_its_roles_while_it_drains(
    esd, esd_client_mode, admin_user, make_role
):
    make_role("third", ["inference:all"])
    created = esd.call("POST", "endpoints", endpoint_body(endpoint_name="first"), headers=as_admin())
    assert created.status == 202
    endpoint = Endpoint.objects.get(name="esd-async-first")
    endpoint_services.worker_register(endpoint=endpoint, hostname="gpu-1", pid=4242, device="cuda")  # busy, alive
    deleted = esd.call("DELETE", "endpoints", {"endpoint_name_list": ["esd-async-first"]}, headers=as_admin())
    assert deleted.status == 204
    assert Endpoint.objects.get(pk=endpoint.pk).status == EndpointStatus.DELETING  # its worker drains
    listed = esd.call("GET", "endpoints", headers=as_admin())
    assert listed.body["data"]["endpoints"] == []
    again = esd.call("POST", "endpoints", endpoint_body(endpoint_name="second"), headers=as_admin())
    assert again.status == 202, again.body
    names = [
        item["endpoint_name"] for item in esd.call("GET", "endpoints", headers=as_admin()).body["data"]["endpoints"]
    ]
    assert names == ["esd-async-second"]
    # The draining one still owns its name until its last worker leaves.
    same = esd.call(
        "POST", "endpoints", endpoint_body(endpoint_name="first", assign_to_roles=["third"]), headers=as_admin()
    )
    assert same.status == 400 and "Cannot create already existing model" in same.body["message"]
    endpoint_services.worker_deregister(worker=Worker.objects.get(endpoint=endpoint))
    assert not Endpoint.objects.filter(pk=endpoint.pk).exists()
