"""Object-level access: every route on objects of every kind, for every kind of principal.

Olive (role `team`) owns a checkpoint visible to `team`, a job, and uses an endpoint of `team`. The principals:
anonymous, a peer in the same role, a user of another role with the same permission strings, a user with only
`:list` strings, an IT Operator, a deactivated peer, and Olive's own revoked token. Each cell asserts the status,
that nothing changed unless the principal may change it, and that lists and counts reveal nothing else.
"""

import pytest

from accounts import grants
from accounts import services as account_services
from accounts.models import ApiToken
from accounts.roles import IT_OPERATOR
from checkpoints.models import Checkpoint, CheckpointStatus
from endpoints import services as endpoint_services
from endpoints.models import Endpoint
from inferences.models import InferenceJob
from tests.helpers import safetensors_bytes

TEAM = ["checkpoint:create", "checkpoint:list", "inference:create", "inference:list", "sagemaker_endpoint:list"]
LISTER = ["checkpoint:list", "inference:list", "sagemaker_endpoint:list", "user:list", "role:list"]
PRINCIPALS = ["anonymous", "peer", "other_role", "lister", "it_operator", "deactivated", "revoked"]


@pytest.fixture
def world(db, esd, admin_user, make_role, make_user, token_for, settings, tmp_path):
    settings.ESD_STORAGE_ROOT = tmp_path
    from checkpoints import services as checkpoint_services

    make_role("team", TEAM)
    make_role("others", TEAM)
    make_role("listers", LISTER)
    olive = make_user("olive", roles=["team"])
    checkpoint = checkpoint_services.checkpoint_create_from_upload(
        actor=olive, type="Stable-diffusion", name="olive.safetensors", chunks=iter([safetensors_bytes()])
    )
    grants.set_visibility(checkpoint, ["team"])
    endpoint = endpoint_services.endpoint_create(
        actor=admin_user, suffix="team", endpoint_type="Async", instance_type="cpu", count=1, autoscaling=False,
        roles=["team"],
    )  # fmt: skip
    Endpoint.objects.filter(pk=endpoint.pk).update(status="InService")
    job = InferenceJob.objects.create(task_type="txt2img", inference_type="Async", created_by=olive)
    grants.grant_new(job, owner=olive, visible_to=["olive"])
    revoked_token = token_for(olive)
    account_services.api_token_revoke(token=ApiToken.objects.get(user=olive))
    tokens = {
        "anonymous": None,
        "peer": token_for(make_user("pat", roles=["team"])),
        "other_role": token_for(make_user("oscar", roles=["others"])),
        "lister": token_for(make_user("lisa", roles=["listers"])),
        "it_operator": token_for(make_user("ivan", roles=[IT_OPERATOR])),
        "revoked": revoked_token,
    }
    deactivated = make_user("dora", roles=["team"])
    tokens["deactivated"] = token_for(deactivated)
    deactivated.is_active = False
    deactivated.save()
    return {"checkpoint": checkpoint, "endpoint": endpoint, "job": job, "tokens": tokens, "esd": esd}


def call(world, principal, method, path, body=None, query=None):
    token = world["tokens"][principal]
    return world["esd"].call(method, path, body, token=token, query=query)


UNAUTHENTICATED = {"anonymous": 401, "deactivated": 401, "revoked": 401}


def expect(table: dict[str, int]) -> list[tuple[str, int]]:
    return [(principal, {**UNAUTHENTICATED, **table}[principal]) for principal in PRINCIPALS]


@pytest.mark.parametrize(
    ("principal", "status", "sees"),
    [(p, s, p in ("peer", "it_operator")) for p, s in expect({"peer": 200, "other_role": 200, "lister": 200,
                                                                "it_operator": 200})],
)  # fmt: skip
def test_checkpoint_list(world, principal, status, sees):
    answer = call(world, principal, "GET", "checkpoints")
    assert answer.status == status
    if status == 200:
        ids = [item["id"] for item in answer.body["data"]["checkpoints"]]
        assert (str(world["checkpoint"].pk) in ids) is sees
        assert answer.body["data"]["total"] == len(ids)


@pytest.mark.parametrize(
    ("principal", "status"),
    expect({"peer": 403, "other_role": 404, "lister": 404, "it_operator": 200}),
)
def test_checkpoint_update(world, principal, status):
    answer = call(world, principal, "PUT", f"checkpoints/{world['checkpoint'].pk}", {"status": "Disabled"})
    assert answer.status == status
    changed = Checkpoint.objects.get(pk=world["checkpoint"].pk).status == CheckpointStatus.DISABLED
    assert changed is (status == 200)


@pytest.mark.parametrize(
    ("principal", "status", "deleted"),
    [(p, s, p == "it_operator") for p, s in expect({"peer": 403, "other_role": 204, "lister": 204,
                                                     "it_operator": 204})],
)  # fmt: skip
def test_checkpoint_delete(world, principal, status, deleted):
    answer = call(world, principal, "DELETE", "checkpoints", {"checkpoint_id_list": [str(world["checkpoint"].pk)]})
    assert answer.status == status
    assert Checkpoint.objects.filter(pk=world["checkpoint"].pk).exists() is not deleted


@pytest.mark.parametrize(
    ("principal", "status", "sees"),
    [(p, s, p in ("peer", "it_operator")) for p, s in expect({"peer": 200, "other_role": 200, "lister": 200,
                                                                "it_operator": 200})],
)  # fmt: skip
def test_endpoint_list(world, principal, status, sees):
    answer = call(world, principal, "GET", "endpoints")
    assert answer.status == status
    if status == 200:
        names = [item["endpoint_name"] for item in answer.body["data"]["endpoints"]]
        assert (world["endpoint"].name in names) is sees


@pytest.mark.parametrize(
    ("principal", "status", "deleted"),
    [(p, s, p == "it_operator") for p, s in expect({"peer": 403, "other_role": 403, "lister": 403,
                                                     "it_operator": 204})],
)  # fmt: skip
def test_endpoint_delete(world, principal, status, deleted):
    answer = call(world, principal, "DELETE", "endpoints", {"endpoint_name_list": [world["endpoint"].name]})
    assert answer.status == status
    remaining = Endpoint.objects.filter(pk=world["endpoint"].pk, status__in=["InService", "Creating"]).exists()
    assert remaining is not deleted


@pytest.mark.parametrize(
    ("principal", "status", "sees"),
    [(p, s, p == "it_operator") for p, s in expect({"peer": 200, "other_role": 200, "lister": 200,
                                                     "it_operator": 200})],
)  # fmt: skip
def test_job_list(world, principal, status, sees):
    answer = call(world, principal, "GET", "inferences", query={"limit": "50"})
    assert answer.status == status
    if status == 200:
        ids = [item["InferenceJobId"] for item in answer.body["data"]["inferences"]]
        assert (str(world["job"].pk) in ids) is sees
        assert len(ids) == (1 if sees else 0)


@pytest.mark.parametrize(
    ("principal", "status"), expect({"peer": 404, "other_role": 404, "lister": 404, "it_operator": 200})
)
def test_job_get(world, principal, status):
    answer = call(world, principal, "GET", f"inferences/{world['job'].pk}")
    assert answer.status == status
    if status == 404:
        assert answer.body["message"] == f"inference with id {world['job'].pk} not found"


@pytest.mark.parametrize(
    ("principal", "status"), expect({"peer": 404, "other_role": 404, "lister": 404, "it_operator": 200})
)
def test_job_cancel(world, principal, status):
    answer = call(world, principal, "PUT", f"inferences/{world['job'].pk}/cancel")
    assert answer.status == status
    assert InferenceJob.objects.get(pk=world["job"].pk).cancelled is (status == 200)


@pytest.mark.parametrize(
    ("principal", "status"), expect({"peer": 404, "other_role": 404, "lister": 404, "it_operator": 400})
)
def test_job_start(world, principal, status):
    """Only the IT Operator gets past visibility; the job's payload was never uploaded, so it stays created."""
    answer = call(world, principal, "PUT", f"inferences/{world['job'].pk}/start")
    assert answer.status == status
    assert InferenceJob.objects.get(pk=world["job"].pk).status == "created"


@pytest.mark.parametrize(
    ("principal", "status", "deleted"),
    [(p, s, p == "it_operator") for p, s in expect({"peer": 204, "other_role": 204, "lister": 204,
                                                     "it_operator": 204})],
)  # fmt: skip
def test_job_delete(world, principal, status, deleted):
    answer = call(world, principal, "DELETE", "inferences", {"inference_id_list": [str(world["job"].pk)]})
    assert answer.status == status
    assert InferenceJob.objects.filter(pk=world["job"].pk).exists() is not deleted


@pytest.mark.parametrize(("username", "may_use"), [("pat", True), ("oscar", False), ("lisa", False), ("ivan", True)])
def test_who_may_run_jobs_on_olives_checkpoint(world, username, may_use):
    """A job's models resolve only to checkpoints its creator may see (ESD did not check)."""
    from accounts.models import User
    from inferences.selectors import usable_checkpoint

    user = User.objects.get(username=username)
    found = usable_checkpoint(user=user, type="Stable-diffusion", name="olive.safetensors")
    assert (found == world["checkpoint"]) is may_use
