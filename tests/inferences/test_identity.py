"""Roles and users share one namespace: a role named like a user can neither be made nor capture her jobs."""

from accounts.models import Role, User

from .conftest import txt2img
from .jobs import serve

MAKER = ["role:create", "user:create", "inference:list", "inference:create"]


def test_the_api_refuses_a_role_named_like_a_user_and_a_user_named_like_a_role(site, esd, make_user, token_for):
    mallory = make_user("mallory", MAKER)
    token = token_for(mallory)
    role = {"role_name": "ALICE", "creator": "mallory", "permissions": ["inference:list"]}
    refused = esd.call("POST", "roles", role, token=token)
    assert refused.status == 400
    assert refused.body["message"].startswith("role name ALICE is taken by the user alice")
    assert not Role.objects.filter(group__name__iexact="alice").exists()

    user = {
        "username": "Role-Mallory",
        "password": "a-long-passphrase-1",
        "creator": "mallory",
        "roles": ["role-mallory"],
    }
    refused = esd.call("POST", "users", user, token=token)
    assert refused.status == 400
    assert refused.body["message"].startswith("username Role-Mallory is taken by the role role-mallory")
    assert not User.objects.filter(username__iexact="role-mallory").exists()


def test_a_role_sharing_a_username_from_before_the_rule_does_not_see_her_new_job(
    site, esd, make_role, make_user, token_for
):
    make_role("alice", ["inference:list"])  # written straight to the database, as data from before the rule
    eve = make_user("eve", roles=["alice"])
    serve(site, "Async", queues={"endpoint.elsewhere"})  # the endpoint is in service; the job need not run
    job_id = site.submit(txt2img())
    eve_token = token_for(eve)
    assert site.get(job_id, token=eve_token).status == 404
    listed = esd.call("GET", "inferences", token=eve_token).body["data"]["inferences"]
    assert job_id not in [job["InferenceJobId"] for job in listed]
    mine = esd.call("GET", "inferences", token=site.token).body["data"]["inferences"]
    assert job_id in [job["InferenceJobId"] for job in mine]
