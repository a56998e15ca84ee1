"""The admin manages users, roles and tokens through the same services and rules as the API."""

import re

import pytest

from accounts.models import ApiToken, Role, User
from accounts.roles import IT_OPERATOR
from accounts.selectors import role_permission_strings, user_role_names

# The user pages carry the API-token inline; a form post must include its (empty) management form.
NO_INLINE_TOKENS = {"api_tokens-TOTAL_FORMS": "0", "api_tokens-INITIAL_FORMS": "0"}


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_index_lists_users_roles_and_tokens(admin_client):
    page = admin_client.get("/admin/").content.decode()
    for label in ("Users", "Roles", "API tokens"):
        assert label in page
    assert "Groups" not in page  # roles replace bare groups


def test_role_form_has_a_checkbox_per_permission_string(admin_client):
    page = admin_client.get("/admin/accounts/role/add/").content.decode()
    assert page.count('type="checkbox" name="permissions"') == 18


def test_add_a_role(admin_client):
    response = admin_client.post(
        "/admin/accounts/role/add/", {"name": "designers", "permissions": ["checkpoint:list", "inference:create"]}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    role = Role.objects.get(group__name="designers")
    assert role_permission_strings(role) == ["checkpoint:list", "inference:create"]
    assert role.creator == "admin"


def test_role_form_refuses_what_the_actor_may_not_grant(client, make_user):
    staff = make_user("staffer", ["role:create", "train:list"], is_staff=True)
    client.force_login(staff)
    response = client.post("/admin/accounts/role/add/", {"name": "greedy", "permissions": ["user:all"]})
    assert response.status_code == 200
    assert "have not permission to create role with permission: [user:all]" in response.content.decode()
    assert not Role.objects.filter(group__name="greedy").exists()


def test_bad_role_names_are_refused_on_the_form(admin_client):
    response = admin_client.post("/admin/accounts/role/add/", {"name": "bad\tname", "permissions": ["train:list"]})
    assert response.status_code == 200
    assert not Role.objects.filter(group__name="bad\tname").exists()


def test_built_in_role_is_read_only(admin_client):
    role = Role.objects.get(group__name=IT_OPERATOR)
    page = admin_client.get(f"/admin/accounts/role/{role.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    assert admin_client.post(f"/admin/accounts/role/{role.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Role.objects.filter(pk=role.pk).exists()


def test_add_a_user_with_roles(admin_client, make_role):
    designers = make_role("designers", ["checkpoint:list"])
    response = admin_client.post(
        "/admin/accounts/user/add/",
        {
            "username": "dana",
            "password1": "Long-enough-pw-42",
            "password2": "Long-enough-pw-42",
            "roles": [designers.pk],
            **NO_INLINE_TOKENS,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    dana = User.objects.get(username="dana")
    assert dana.creator == "admin"
    assert user_role_names([dana])[dana.pk] == ["designers"]
    assert dana.check_password("Long-enough-pw-42")


def test_the_admin_refuses_a_user_named_like_a_role_and_a_role_named_like_a_user(admin_client, make_role):
    designers = make_role("designers", ["checkpoint:list"])
    passwords = {"password1": "Long-enough-pw-42", "password2": "Long-enough-pw-42"}
    response = admin_client.post(
        "/admin/accounts/user/add/",
        {"username": "Designers", **passwords, "roles": [designers.pk], **NO_INLINE_TOKENS},
    )
    assert response.status_code == 200
    assert "username Designers is taken by the role designers" in response.content.decode()
    assert not User.objects.filter(username="Designers").exists()
    response = admin_client.post("/admin/accounts/role/add/", {"name": "ADMIN", "permissions": ["train:list"]})
    assert response.status_code == 200
    assert "role name ADMIN is taken by the user admin" in response.content.decode()
    assert not Role.objects.filter(group__name="ADMIN").exists()


def test_create_token_action_shows_the_token_once(admin_client, admin_user, esd):
    response = admin_client.post(
        "/admin/accounts/user/", {"action": "create_api_token", "_selected_action": [admin_user.pk]}, follow=True
    )
    token = re.search(r"(esd_[A-Za-z0-9_-]{40,})", " ".join(shown_messages(response))).group(1)
    assert esd.call("GET", "roles", token=token).status == 200
    assert token not in admin_client.get("/admin/accounts/user/").content.decode()
    assert token not in admin_client.get(f"/admin/accounts/user/{admin_user.pk}/change/").content.decode()


def test_add_token_page_creates_and_shows_a_token(admin_client, admin_user, esd):
    response = admin_client.post("/admin/accounts/apitoken/add/", {"user": admin_user.pk, "name": "ci"}, follow=True)
    token = re.search(r"(esd_[A-Za-z0-9_-]{40,})", " ".join(shown_messages(response))).group(1)
    assert ApiToken.objects.get(name="ci").user == admin_user
    assert esd.call("GET", "roles", token=token).status == 200


def test_revoking_a_token_in_the_admin(admin_client, admin_user, token_for, esd):
    token = token_for(admin_user)
    row = ApiToken.objects.get(user=admin_user)
    admin_client.post(f"/admin/accounts/apitoken/{row.pk}/delete/", {"post": "yes"})
    assert esd.call("GET", "roles", token=token).status == 401


def test_the_last_it_operator_cannot_be_deleted_in_the_admin(client, admin_user, make_user):
    admin_user.is_superuser = False
    admin_user.save()
    other = make_user("other-admin", is_staff=True, is_superuser=True)
    client.force_login(other)
    page = client.get(f"/admin/accounts/user/{admin_user.pk}/delete/").content.decode()
    assert "no active IT Operator user would be left" in page
    client.post(f"/admin/accounts/user/{admin_user.pk}/delete/", {"post": "yes"})
    assert User.objects.filter(pk=admin_user.pk).exists()


def test_deleting_users_with_the_bulk_action_goes_through_the_rules(admin_client, admin_user, make_user):
    victim = make_user("victim")
    response = admin_client.post(
        "/admin/accounts/user/",
        {"action": "delete_users", "_selected_action": [victim.pk, admin_user.pk]},
        follow=True,
    )
    assert any("cannot delete yourself" in message for message in shown_messages(response))
    assert User.objects.filter(pk=victim.pk).exists()
    admin_client.post("/admin/accounts/user/", {"action": "delete_users", "_selected_action": [victim.pk]})
    assert not User.objects.filter(pk=victim.pk).exists()
