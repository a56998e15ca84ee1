"""Issue 26.10 and the admin half of 26.19: the admin's lists, pages, filters and pickers show a staff user what the
API shows it, through the same selectors (a staff user with checkpoint:list saw all 15 checkpoints, and user:list
every user, role and API token)."""

import re

import pytest
from django.test import Client

from accounts import grants, services
from checkpoints.models import Checkpoint
from endpoints import services as endpoint_services
from endpoints.models import Endpoint
from inferences.models import InferenceJob

LISTER = ["checkpoint:list", "user:list", "role:list", "sagemaker_endpoint:list", "inference:list", "user:create"]


@pytest.fixture
def world(db, admin_user, make_role, make_user):
    make_role("team", ["checkpoint:list", "inference:list"])
    make_role("hidden-team", ["checkpoint:list"])
    staff = make_user("staffer", LISTER, is_staff=True)
    child = make_user("child", roles=["team"], creator="staffer")
    stranger = make_user("stranger", roles=["hidden-team"])
    mine = Checkpoint.objects.create(type="Lora", status="Active", created_by=staff)
    grants.grant_new(mine, owner=staff)
    theirs = Checkpoint.objects.create(type="Lora", status="Active", created_by=stranger)
    grants.grant_new(theirs, owner=stranger, visible_to=["hidden-team"])
    services.api_token_create(user=child)
    services.api_token_create(user=stranger)
    own_job = InferenceJob.objects.create(task_type="txt2img", inference_type="Async", created_by=staff)
    grants.grant_new(own_job, owner=staff, owner_views=True)
    their_job = InferenceJob.objects.create(task_type="txt2img", inference_type="Async", created_by=stranger)
    grants.grant_new(their_job, owner=stranger, owner_views=True)
    for job in (own_job, their_job):  # one denoising loop ran both
        job.batch_id, job.status = "6d2a1f4e-0000-4000-8000-000000000001", "succeeded"
        job.save()
    endpoint_services.endpoint_create(
        actor=admin_user, suffix="hidden", endpoint_type="Async", instance_type="cpu", count=1, autoscaling=False,
        roles=["hidden-team"],
    )  # fmt: skip
    client = Client()
    client.force_login(staff)
    return {"client": client, "mine": mine, "theirs": theirs, "own_job": own_job, "stranger": stranger}


def page(world, url):
    answer = world["client"].get(url)
    return answer.status_code, answer.content.decode()


def test_the_checkpoint_list_and_pages_show_only_what_the_api_shows(world):
    status, html = page(world, "/admin/checkpoints/checkpoint/")
    assert status == 200
    assert str(world["mine"].pk) in html and str(world["theirs"].pk) not in html
    status, _ = page(world, f"/admin/checkpoints/checkpoint/{world['theirs'].pk}/change/")
    assert status == 302  # the admin's "does not exist" redirect, as for an id that never existed
    status, _ = page(world, f"/admin/checkpoints/checkpoint/{world['theirs'].pk}/history/")
    assert status in (302, 404)


def test_the_user_role_and_token_lists_follow_user_list_and_role_list(world):
    _, users = page(world, "/admin/accounts/user/")
    assert re.findall(r'class="field-username"><a href="[^"]+">([^<]+)</a>', users) == ["child", "staffer"]
    assert "hidden-team" not in users  # the role filter offers only roles of users it may see
    _, roles = page(world, "/admin/accounts/role/")
    assert "role-staffer" in roles and "hidden-team" not in roles and "IT Operator" not in roles
    _, tokens = page(world, "/admin/accounts/apitoken/")
    assert "child" in tokens and "stranger" not in tokens
    status, _ = page(world, f"/admin/accounts/user/{world['stranger'].pk}/change/")
    assert status == 302


def test_the_user_picker_lists_only_visible_users(world):
    status, body = page(world, "/admin/autocomplete/?app_label=accounts&model_name=apitoken&field_name=user&term=")
    assert status == 200
    names = {item["text"] for item in __import__("json").loads(body)["results"]}
    assert names == {"staffer", "child"}


def test_the_job_list_filter_and_batch_show_only_visible_jobs(world):
    _, jobs = page(world, "/admin/inferences/inferencejob/")
    assert "stranger" not in jobs  # the creator filter offered every username
    _, job_page = page(world, f"/admin/inferences/inferencejob/{world['own_job'].pk}/change/")
    assert "with 0 other job(s)" in job_page  # the stranger's job in the same loop is not the staffer's to know of


def test_the_endpoint_list_follows_sagemaker_endpoint_list(world):
    _, endpoints = page(world, "/admin/endpoints/endpoint/")
    assert Endpoint.objects.filter(name="esd-async-hidden").exists()
    assert "esd-async-hidden" not in endpoints
