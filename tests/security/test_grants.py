"""Guardian's grants are the one record of who sees what: a grant given and removed on the admin's object-permission
page changes what the API answers, deleting a role takes its grants with it, and ESD's lists are read from them."""

import re

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from accounts import grants
from accounts import services as account_services
from checkpoints import selectors as checkpoint_selectors
from checkpoints.models import Checkpoint, CheckpointGroupObjectPermission
from endpoints import services as endpoint_services
from endpoints.models import Endpoint, EndpointGroupObjectPermission
from inferences.models import InferenceJob
from tests.helpers import safetensors_bytes

TEAM = ["checkpoint:create", "checkpoint:list", "inference:create", "inference:list", "sagemaker_endpoint:list"]


@pytest.fixture
def world(db, esd, admin_user, make_role, make_user, token_for, settings, tmp_path):
    settings.ESD_STORAGE_ROOT = tmp_path
    from checkpoints import services as checkpoint_services

    make_role("team", TEAM)
    make_role("others", TEAM)
    olive = make_user("olive", roles=["team"])
    oscar = make_user("oscar", roles=["others"])
    checkpoint = checkpoint_services.checkpoint_create_from_upload(
        actor=olive, type="Stable-diffusion", name="olive.safetensors", chunks=iter([safetensors_bytes()])
    )
    endpoint = endpoint_services.endpoint_create(
        actor=admin_user, suffix="team", endpoint_type="Async", instance_type="cpu", count=1, autoscaling=False,
        roles=["team"],
    )  # fmt: skip
    job = InferenceJob.objects.create(task_type="txt2img", inference_type="Async", created_by=olive)
    grants.grant_new(job, owner=olive, visible_to=["olive"])
    admin = Client()
    admin.force_login(admin_user)
    return {
        "checkpoint": checkpoint, "endpoint": endpoint, "job": job, "olive": olive, "oscar": oscar,
        "token": token_for(oscar), "esd": esd, "admin": admin,
    }  # fmt: skip


def oscar_sees(world) -> dict[str, bool]:
    """What Oscar (role `others`, which no object names) gets from the three routes."""
    call = world["esd"].call
    checkpoints = call("GET", "checkpoints", token=world["token"]).body["data"]["checkpoints"]
    endpoints = call("GET", "endpoints", token=world["token"], query={"username": "oscar"}).body["data"]["endpoints"]
    job = call("GET", f"inferences/{world['job'].pk}", token=world["token"])
    assert job.status in (200, 404)
    return {
        "checkpoint": str(world["checkpoint"].pk) in [item["id"] for item in checkpoints],
        "endpoint": str(world["endpoint"].pk) in [item["EndpointDeploymentJobId"] for item in endpoints],
        "job": job.status == 200,
    }


def set_in_admin(world, obj, *, principal: str, key, permissions: list[str]) -> None:
    """Submit the object's permission page for one user or group, as a person ticking the boxes would."""
    meta = obj._meta
    page = reverse(f"admin:{meta.app_label}_{meta.model_name}_permissions_manage_{principal}", args=[obj.pk, key])
    form = world["admin"].get(page)
    assert form.status_code == 200
    # the browser sends the form's CSRF token too, so unticking every box still posts a form (guardian reads an
    # empty POST as "show the page")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.content.decode()).group(1)
    answer = world["admin"].post(page, {"csrfmiddlewaretoken": token, "permissions": permissions})
    assert answer.status_code == 302, answer.content[:500]
    assert answer.url == page  # guardian's "Permissions saved." redirect, not a refusal


@pytest.mark.parametrize("principal", ["user", "group"])
def test_a_grant_given_and_removed_in_the_admin_changes_what_the_api_answers(world, principal):
    key = world["oscar"].pk if principal == "user" else Group.objects.get(name="others").pk
    assert oscar_sees(world) == {"checkpoint": False, "endpoint": False, "job": False}
    for name in ("checkpoint", "endpoint", "job"):
        obj = world[name]
        set_in_admin(world, obj, principal=principal, key=key, permissions=[f"view_{obj._meta.model_name}"])
    assert oscar_sees(world) == {"checkpoint": True, "endpoint": True, "job": True}
    # ESD's lists show the grant too: they are read from the grants
    expected = "oscar" if principal == "user" else "others"
    assert Checkpoint.objects.get(pk=world["checkpoint"].pk).allowed_roles_or_users == ["team", expected]
    assert Endpoint.objects.get(pk=world["endpoint"].pk).owner_group_or_role == ["team", expected]
    assert InferenceJob.objects.get(pk=world["job"].pk).owner_group_or_role == (
        ["olive", "oscar"] if principal == "user" else ["others", "olive"]
    )
    for name in ("checkpoint", "endpoint", "job"):
        set_in_admin(world, world[name], principal=principal, key=key, permissions=[])
    assert oscar_sees(world) == {"checkpoint": False, "endpoint": False, "job": False}


def test_the_change_permission_given_in_the_admin_makes_an_owner(world, esd):
    checkpoint = world["checkpoint"]
    body = {"status": "Disabled"}
    set_in_admin(world, checkpoint, principal="user", key=world["oscar"].pk, permissions=["view_checkpoint"])
    assert esd.call("PUT", f"checkpoints/{checkpoint.pk}", body, token=world["token"]).status == 403
    set_in_admin(world, checkpoint, principal="user", key=world["oscar"].pk, permissions=["change_checkpoint"])
    assert esd.call("PUT", f"checkpoints/{checkpoint.pk}", body, token=world["token"]).status == 200
    assert Checkpoint.objects.get(pk=checkpoint.pk).status == "Disabled"


def test_deleting_a_role_revokes_its_grants(world, admin_user, make_role, make_user, token_for, esd):
    peer_token = token_for(make_user("pat", roles=["team"]))
    listed = esd.call("GET", "checkpoints", token=peer_token).body["data"]["checkpoints"]
    assert [item["id"] for item in listed] == [str(world["checkpoint"].pk)]
    assert account_services.role_delete_many(actor=admin_user, names=["team"]) == 1
    assert not CheckpointGroupObjectPermission.objects.exists()
    assert not EndpointGroupObjectPermission.objects.exists()
    assert Checkpoint.objects.get(pk=world["checkpoint"].pk).allowed_roles_or_users == []
    assert Endpoint.objects.get(pk=world["endpoint"].pk).owner_group_or_role == []
    # A new role of the same name is a new group: it inherits nothing the old one was granted
    make_role("team", TEAM)
    account_services.user_set_roles(user=world["oscar"], roles=[Group.objects.get(name="team").role])
    assert oscar_sees(world) == {"checkpoint": False, "endpoint": False, "job": False}
    # The creator (who has lost its role, and with it checkpoint:list) still owns and sees its checkpoint
    olive = world["olive"]
    assert grants.owns(olive, world["checkpoint"])
    assert list(checkpoint_selectors.checkpoint_list(viewer=olive, subject=olive)) == [world["checkpoint"]]


def test_everyone_opens_a_checkpoint_to_every_user(world):
    grants.set_visibility(world["checkpoint"], ["*"])
    assert oscar_sees(world)["checkpoint"] is True
    assert Checkpoint.objects.get(pk=world["checkpoint"].pk).allowed_roles_or_users == ["*"]
    assert grants.set_visibility(world["checkpoint"], ["team", "nobody-by-this-name"]) == ["nobody-by-this-name"]
    assert oscar_sees(world)["checkpoint"] is False
    assert Checkpoint.objects.get(pk=world["checkpoint"].pk).allowed_roles_or_users == ["team"]


def test_the_admins_everyone_actions_open_and_close_a_checkpoint(world):
    checkpoint = world["checkpoint"]
    changelist = reverse("admin:checkpoints_checkpoint_changelist")
    world["admin"].post(changelist, {"action": "open_to_everyone", "_selected_action": [checkpoint.pk]})
    assert oscar_sees(world)["checkpoint"] is True
    assert Checkpoint.objects.get(pk=checkpoint.pk).allowed_roles_or_users == ["*", "team"]
    world["admin"].post(changelist, {"action": "limit_to_grants", "_selected_action": [checkpoint.pk]})
    assert oscar_sees(world)["checkpoint"] is False
    # Someone who may not change one of them changes none
    from checkpoints import services as checkpoint_services
    from esd.errors import Forbidden

    with pytest.raises(Forbidden):
        checkpoint_services.checkpoint_set_everyone(actor=world["oscar"], checkpoints=[checkpoint], everyone=True)
    assert Checkpoint.objects.get(pk=checkpoint.pk).everyone is False
