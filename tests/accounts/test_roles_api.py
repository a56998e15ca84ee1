"""/roles: ESD's bodies, messages and rules (esd-behaviour.md §5) and the hardening of architecture.md §5."""

import pytest

from accounts.models import Role
from accounts.roles import IT_OPERATOR
from accounts.selectors import role_permission_strings, user_role_names


@pytest.fixture
def admin_token(admin_user, token_for):
    return token_for(admin_user)


def test_create_then_list_a_role(esd, admin_token):
    body = {"role_name": "byoc", "creator": "admin", "permissions": ["sagemaker_endpoint:all", "train:list"]}
    assert esd.call("POST", "roles", body, token=admin_token).body == {"statusCode": 201, "message": "role created"}
    response = esd.call("GET", "roles", token=admin_token, query={"role": "byoc"})
    assert response.body == {
        "statusCode": 200,
        "message": "OK",
        "data": {
            "roles": [
                {"role_name": "byoc", "creator": "admin", "permissions": ["sagemaker_endpoint:all", "train:list"]}
            ],
            "previous_evaluated_key": "not_applicable",
            "last_evaluated_key": None,
        },
    }


def test_list_is_sorted_by_name_and_ignores_unknown_parameters(esd, admin_token, make_role):
    make_role("zeta", ["train:list"])
    make_role("alpha", ["train:list"])
    response = esd.call("GET", "roles", token=admin_token, query={"role_params": "x"})
    names = [role["role_name"] for role in response.body["data"]["roles"]]
    assert names == sorted(names)
    assert {"alpha", "zeta", IT_OPERATOR} <= set(names)


def test_built_in_it_operator_holds_every_all(esd, admin_token):
    response = esd.call("GET", "roles", token=admin_token, query={"role": IT_OPERATOR})
    assert set(response.body["data"]["roles"][0]["permissions"]) == {
        "train:all",
        "checkpoint:all",
        "inference:all",
        "sagemaker_endpoint:all",
        "user:all",
        "role:all",
    }


def test_upsert_overwrites_permissions_and_keeps_the_creator(esd, admin_token, make_user, make_role):
    # ESD made the rewriter the creator; a role's creator sees what is shared with the role, so here it stays.
    make_user("someone")
    make_role("editors", ["train:list"], creator="someone")
    body = {"role_name": "editors", "creator": "admin", "permissions": ["checkpoint:all"]}
    assert esd.call("POST", "roles", body, token=admin_token).status == 201
    role = Role.objects.get(group__name="editors")
    assert role_permission_strings(role) == ["checkpoint:all"]
    assert role.creator == "someone"


def test_permission_strings_are_mirrored_on_the_group(esd, admin_token, make_user):
    esd.call("POST", "roles", {"role_name": "ops", "creator": "admin", "permissions": ["user:list"]}, token=admin_token)
    member = make_user("member", roles=["ops"])
    assert member.has_perm("accounts.esd_user_list")
    assert member.has_perm("accounts.view_user")
    assert not member.has_perm("accounts.change_user")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"creator": "admin", "permissions": ["train:all"]}, 'object has missing required properties (["role_name"])'),
        ({"role_name": "x", "creator": "admin", "permissions": []}, "array is too short"),
        ({"role_name": "x", "creator": "admin", "permissions": ["train:delete"]}, 'instance value ("train:delete")'),
        ({"role_name": "x", "creator": "admin", "permissions": "train:all"}, "instance type (string)"),
        ({"role_name": "x" * 65, "creator": "admin", "permissions": ["train:all"]}, "maximum allowed: 64"),
        ({"role_name": "Rôle", "creator": "admin", "permissions": ["train:all"]}, "does not match input string"),
        ({"role_name": "a\r\nb", "creator": "admin", "permissions": ["train:all"]}, "does not match input string"),
        ({"role_name": "", "creator": "admin", "permissions": ["train:all"]}, "required minimum: 1"),
        ({"role_name": "x", "creator": "admin", "permissions": ["train:all"], "extra": 1}, "not allowed"),
    ],
)
def test_bad_bodies_are_400_and_write_nothing(esd, admin_token, body, fragment):
    before = Role.objects.count()
    response = esd.call("POST", "roles", body, token=admin_token)
    assert response.status == 400
    assert fragment in response.body["message"]
    assert Role.objects.count() == before


def test_unknown_creator(esd, admin_token):
    body = {"role_name": "x", "creator": "bad_creator", "permissions": ["train:all"]}
    response = esd.call("POST", "roles", body, token=admin_token)
    # admin holds user:all, so it may name another creator, who must exist.
    assert response.body == {"statusCode": 400, "message": "creator bad_creator not exist"}


def test_creator_must_be_the_caller_without_user_all(esd, make_user, token_for):
    user = make_user("maker", ["role:all"])
    body = {"role_name": "x", "creator": "admin", "permissions": ["train:all"]}
    response = esd.call("POST", "roles", body, token=token_for(user))
    assert response.status == 403
    assert 'creator "admin" is not the caller "maker"' in response.body["message"]


def test_role_create_holder_cannot_grant_what_it_lacks(esd, make_user, token_for):
    user = make_user("maker", ["role:create", "train:list"])
    token = token_for(user)
    ok = esd.call("POST", "roles", {"role_name": "r1", "creator": "maker", "permissions": ["train:list"]}, token=token)
    assert ok.status == 201
    response = esd.call(
        "POST", "roles", {"role_name": "r2", "creator": "maker", "permissions": ["train:all"]}, token=token
    )
    assert response.body == {
        "statusCode": 400,
        "message": "creator maker have not permission to create role with permission: [train:all]",
    }


def test_role_create_holder_cannot_update_someone_elses_role(esd, make_user, make_role, token_for):
    make_role("theirs", ["train:list"], creator="admin")
    user = make_user("maker", ["role:create", "train:list"])
    body = {"role_name": "theirs", "creator": "maker", "permissions": ["train:list"]}
    response = esd.call("POST", "roles", body, token=token_for(user))
    assert response.body == {"statusCode": 400, "message": "creator maker not have permission to update role theirs"}


def test_built_in_role_cannot_be_changed(esd, admin_token):
    body = {"role_name": IT_OPERATOR, "creator": "admin", "permissions": ["train:list"]}
    response = esd.call("POST", "roles", body, token=admin_token)
    assert response.status == 400
    assert "cannot update default role" in response.body["message"]
    assert len(role_permission_strings(Role.objects.get(group__name=IT_OPERATOR))) == 6


def test_delete_removes_the_role_from_its_members(esd, admin_token, make_role, make_user):
    make_role("temp", ["train:list"])
    make_role("keep", ["train:list"])
    member = make_user("member", roles=["temp", "keep"])
    response = esd.call("DELETE", "roles", {"role_name_list": ["temp", "temp", "unknown"]}, token=admin_token)
    assert (response.status, response.raw) == (204, b"")
    assert not Role.objects.filter(group__name="temp").exists()
    assert user_role_names([member])[member.pk] == ["keep"]


def test_default_role_cannot_be_deleted_and_nothing_else_goes(esd, admin_token, make_role):
    make_role("temp", ["train:list"])
    response = esd.call("DELETE", "roles", {"role_name_list": ["temp", IT_OPERATOR]}, token=admin_token)
    assert response.body == {"statusCode": 400, "message": "cannot delete default role"}
    assert Role.objects.filter(group__name="temp").exists()


def test_role_create_holder_may_delete_its_own_roles(esd, make_user, token_for):
    user = make_user("maker", ["role:create", "train:list"])
    token = token_for(user)
    esd.call("POST", "roles", {"role_name": "mine", "creator": "maker", "permissions": ["train:list"]}, token=token)
    assert esd.call("DELETE", "roles", {"role_name_list": ["mine"]}, token=token).status == 204


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, 'object has missing required properties (["role_name_list"])'),
        ({"role_name_list": [""]}, "required minimum: 1"),
        ({"role_name_list": []}, "array is too short"),
        ({"role_name_list": ["x"] * 101}, "array is too long"),
    ],
)
def test_delete_bad_bodies(esd, admin_token, body, fragment):
    response = esd.call("DELETE", "roles", body, token=admin_token)
    assert response.status == 400
    assert fragment in response.body["message"]


def test_role_list_for_a_list_holder_shows_its_roles_and_those_it_created(esd, make_user, make_role, token_for):
    viewer = make_user("viewer", ["role:list"])
    make_role("made-by-viewer", ["train:list"], creator="viewer")
    make_role("not-mine", ["train:list"], creator="admin")
    response = esd.call("GET", "roles", token=token_for(viewer))
    assert sorted(role["role_name"] for role in response.body["data"]["roles"]) == ["made-by-viewer", "role-viewer"]
