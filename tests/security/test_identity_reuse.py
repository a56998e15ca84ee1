"""Issue 26.8 and 26.13: creator rights belong to an account, not to a name. A user re-created under a deleted
creator's name inherits nothing; a role:all rewrite of a role does not make the rewriter its creator (a role's
creator sees the checkpoints shared with the role)."""

from accounts import grants
from accounts.models import Role, User
from checkpoints.models import Checkpoint

DAVES = ["user:create", "user:list", "role:create", "role:list", "checkpoint:create", "checkpoint:list"]


def post_user(esd, token, username, roles, password="A-long-pass-phrase-1", creator="admin"):
    body = {"username": username, "password": password, "creator": creator, "roles": roles}
    return esd.call("POST", "users", body, token=token)


def test_a_recreated_username_inherits_none_of_the_old_accounts_rights(esd, admin_user, make_role, token_for):
    make_role("dave-powers", DAVES)
    admin_token = token_for(admin_user)
    assert post_user(esd, admin_token, "dave", ["dave-powers"]).status == 201
    old_dave = token_for(User.objects.get(username="dave"))
    body = {"role_name": "daves-team", "creator": "dave", "permissions": ["checkpoint:list"]}
    assert esd.call("POST", "roles", body, token=old_dave).status == 201
    assert post_user(esd, old_dave, "carol", ["daves-team"], creator="dave").status == 201
    assert esd.call("DELETE", "users", {"user_name_list": ["dave"]}, token=admin_token).status == 204

    assert post_user(esd, admin_token, "dave", ["dave-powers"]).status == 201
    new_dave = token_for(User.objects.get(username="dave"))
    roles = esd.call("GET", "roles", token=new_dave).body["data"]["roles"]
    assert "daves-team" not in [role["role_name"] for role in roles]
    users = esd.call("GET", "users", token=new_dave).body["data"]["users"]
    assert [user["username"] for user in users] == ["dave"]
    takeover = post_user(esd, new_dave, "carol", ["daves-team"], password="Mine-now-12345", creator="dave")
    assert takeover.body == {
        "statusCode": 400,
        "message": "username carol has already exists, creator dave does not have permissions to change it",
    }
    assert User.objects.get(username="carol").check_password("A-long-pass-phrase-1")
    # What the wire says of the orphans: their creator is gone.
    listed = esd.call("GET", "roles", token=admin_token, query={"role": "daves-team"}).body["data"]["roles"]
    assert listed[0]["creator"] == ""
    carol = esd.call("GET", "users", token=admin_token, query={"username": "carol"}).body["data"]["users"]
    assert carol[0]["creator"] == ""


def test_a_recreated_username_does_not_see_the_old_roles_checkpoints(esd, admin_user, make_user, make_role, token_for):
    old_dave = make_user("dave", DAVES)
    make_role("daves-team", ["checkpoint:list"], creator="dave")
    checkpoint = Checkpoint.objects.create(
        type="Lora", status="Active", created_by=admin_user, params={"creator": "admin"}
    )
    grants.grant_new(checkpoint, owner=admin_user, visible_to=["daves-team"])
    assert _listed(esd, token_for(old_dave)) == [str(checkpoint.id)]
    old_dave.delete()

    new_dave = make_user("dave", roles=["role-dave"])
    assert _listed(esd, token_for(new_dave)) == []


def _listed(esd, token):
    return [item["id"] for item in esd.call("GET", "checkpoints", token=token).body["data"]["checkpoints"]]


def test_a_role_all_rewrite_keeps_the_roles_creator(esd, make_user, make_role, token_for):
    maker = make_user("maker", ["role:create", "role:list", "checkpoint:list"])
    make_role("crew", ["checkpoint:list"], creator="maker")
    rewriter = make_user("rewriter", ["role:all", "checkpoint:list"])
    body = {"role_name": "crew", "creator": "rewriter", "permissions": ["checkpoint:list"]}
    assert esd.call("POST", "roles", body, token=token_for(rewriter)).status == 201
    assert Role.objects.get(group__name="crew").created_by == maker
    # the maker may still delete its role; the rewriter became no creator of it
    assert esd.call("DELETE", "roles", {"role_name_list": ["crew"]}, token=token_for(maker)).status == 204
