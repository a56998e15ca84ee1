"""Attacks found against esd_serve, each replayed here: privilege escalation through roles, through the admin's
user and token pages, and usernames that differ only by case."""

import re

import pytest

from accounts.models import ApiToken, Role, User
from accounts.roles import IT_OPERATOR
from accounts.selectors import role_permission_strings, user_role_names

NO_INLINE_TOKENS = {"api_tokens-TOTAL_FORMS": "0", "api_tokens-INITIAL_FORMS": "0"}
EVERY_ALL = ["user:all", "role:all", "checkpoint:all", "sagemaker_endpoint:all", "inference:all", "train:all"]


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- 1. role:all alone does not reach IT Operator -------------------------------------------------------------------


def test_role_all_alone_cannot_rewrite_its_own_role_with_every_all(esd, admin_user, make_user, token_for):
    climber = make_user("climber", ["role:all"])
    token = token_for(climber)
    body = {"role_name": "role-climber", "creator": "climber", "permissions": EVERY_ALL}
    answer = esd.call("POST", "roles", body, token=token)
    assert answer.status == 400
    assert "have not permission to create role with permission: [user:all]" in answer.body["message"]
    assert role_permission_strings(Role.objects.get(group__name="role-climber")) == ["role:all"]
    # ... so the second step of the attack (giving itself IT Operator) has nothing to stand on.
    grab = {"username": "climber", "password": "pw-123456789", "roles": [IT_OPERATOR], "creator": "climber"}
    assert esd.call("POST", "users", grab, token=token).status == 403
    assert user_role_names([climber])[climber.pk] == ["role-climber"]


def test_role_all_may_still_edit_any_role_within_what_it_holds(esd, make_user, make_role, token_for):
    make_role("theirs", ["train:list"], creator="admin")
    editor = make_user("editor", ["role:all", "train:all", "checkpoint:list"])
    body = {"role_name": "theirs", "creator": "editor", "permissions": ["train:all", "checkpoint:list"]}
    assert esd.call("POST", "roles", body, token=token_for(editor)).status == 201
    assert role_permission_strings(Role.objects.get(group__name="theirs")) == ["checkpoint:list", "train:all"]


def test_rewriting_a_role_is_checked_for_what_its_members_would_gain(esd, make_user, make_role, token_for):
    editor = make_user("editor", ["role:create", "train:list"])
    make_role("crew", ["train:list"], creator="editor")
    make_user("member", roles=["crew"])
    body = {"role_name": "crew", "creator": "editor", "permissions": ["train:list", "inference:all"]}
    answer = esd.call("POST", "roles", body, token=token_for(editor))
    assert answer.status == 400 and "[inference:all]" in answer.body["message"]
    assert not User.objects.get(username="member").has_perm("accounts.esd_inference_all")


def test_the_admin_role_form_applies_the_same_rule(client, make_user):
    staff = make_user("staffer", ["role:all"], is_staff=True)
    client.force_login(staff)
    role = Role.objects.get(group__name="role-staffer")
    response = client.post(f"/admin/accounts/role/{role.pk}/change/", {"name": role.name, "permissions": EVERY_ALL})
    assert response.status_code == 200
    assert "[user:all]" in response.content.decode()
    assert role_permission_strings(Role.objects.get(pk=role.pk)) == ["role:all"]


# --- 2. a staff user with user:all does not take over the superuser -------------------------------------------------


@pytest.fixture
def staff(client, make_user, admin_user):
    """A staff member holding user:all (and role:list), logged in to the admin; `admin` is the superuser."""
    user = make_user("staffer", ["user:all", "role:list"], is_staff=True)
    client.force_login(user)
    return user


def test_admin_token_action_mints_no_token_for_the_superuser(client, staff, admin_user):
    response = client.post(
        "/admin/accounts/user/", {"action": "create_api_token", "_selected_action": [admin_user.pk]}, follow=True
    )
    shown = " ".join(messages_of(response))
    assert "No token for admin" in shown and "only a superuser" in shown
    assert not re.search(r"esd_[A-Za-z0-9_-]{40,}", shown)
    assert not ApiToken.objects.filter(user=admin_user).exists()


def test_admin_token_action_mints_no_token_for_a_user_holding_more(client, staff, make_user):
    stronger = make_user("stronger", ["checkpoint:all"], creator="staffer")
    response = client.post(
        "/admin/accounts/user/", {"action": "create_api_token", "_selected_action": [stronger.pk]}, follow=True
    )
    assert "holds [checkpoint:all], which staffer does not" in " ".join(messages_of(response))
    assert not ApiToken.objects.filter(user=stronger).exists()


def test_admin_token_action_still_works_for_oneself_and_weaker_users(client, staff, make_user):
    weaker = make_user("weaker", ["role:list"], creator="staffer")
    response = client.post(
        "/admin/accounts/user/", {"action": "create_api_token", "_selected_action": [staff.pk, weaker.pk]}, follow=True
    )
    assert len(re.findall(r"esd_[A-Za-z0-9_-]{40,}", " ".join(messages_of(response)))) == 2
    assert ApiToken.objects.filter(user__in=[staff, weaker]).count() == 2


def test_admin_token_add_page_refuses_the_superuser(client, staff, admin_user):
    response = client.post("/admin/accounts/apitoken/add/", {"user": admin_user.pk, "name": "mine-now"})
    assert response.status_code == 200
    assert "only a superuser may change or delete the superuser admin" in response.content.decode()
    assert not ApiToken.objects.filter(user=admin_user).exists()


def test_admin_password_page_of_the_superuser_is_refused(client, staff, admin_user):
    url = f"/admin/accounts/user/{admin_user.pk}/password/"
    assert client.get(url).status_code == 403
    response = client.post(url, {"password1": "Taken-over-pw-1", "password2": "Taken-over-pw-1"})
    assert response.status_code == 403
    admin_user.refresh_from_db()
    assert not admin_user.check_password("Taken-over-pw-1")


def test_admin_password_page_of_a_user_holding_more_is_refused(client, staff, make_user):
    stronger = make_user("stronger", ["inference:all"], creator="staffer")
    response = client.post(
        f"/admin/accounts/user/{stronger.pk}/password/",
        {"password1": "Taken-over-pw-1", "password2": "Taken-over-pw-1"},
    )
    assert response.status_code == 403
    assert not User.objects.get(pk=stronger.pk).check_password("Taken-over-pw-1")


def test_admin_change_page_of_the_superuser_is_read_only(client, staff, admin_user):
    url = f"/admin/accounts/user/{admin_user.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="_save"' not in page
    response = client.post(
        url, {"username": "admin", "is_active": "", "is_superuser": "on", "is_staff": "on", **NO_INLINE_TOKENS}
    )
    assert response.status_code == 403
    assert User.objects.get(pk=admin_user.pk).is_active


def test_a_non_superuser_cannot_tick_is_superuser_or_is_staff(client, staff, make_user):
    target = make_user("plain", ["role:list"], creator="staffer")
    url = f"/admin/accounts/user/{target.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="is_superuser"' not in page and 'name="is_staff"' not in page
    for who in (target, staff):
        client.post(
            f"/admin/accounts/user/{who.pk}/change/",
            {"username": who.username, "is_active": "on", "is_superuser": "on", "is_staff": "on", **NO_INLINE_TOKENS},
        )
    assert not User.objects.get(pk=target.pk).is_superuser
    assert not User.objects.get(pk=target.pk).is_staff
    assert not User.objects.get(pk=staff.pk).is_superuser


def test_the_superuser_still_manages_everything_in_the_admin(client, admin_user, make_user):
    client.force_login(admin_user)
    target = make_user("plain", ["role:list"])
    response = client.post(
        f"/admin/accounts/user/{target.pk}/password/", {"password1": "New-strong-pw-7", "password2": "New-strong-pw-7"}
    )
    assert response.status_code == 302
    assert User.objects.get(pk=target.pk).check_password("New-strong-pw-7")
    assert 'name="is_superuser"' in client.get(f"/admin/accounts/user/{target.pk}/change/").content.decode()


# --- 6. usernames differing only by case ----------------------------------------------------------------------------


def test_api_refuses_a_username_differing_only_by_case(esd, admin_user, token_for):
    body = {"username": "Admin", "password": "pw-123456789", "roles": [IT_OPERATOR], "creator": "admin"}
    answer = esd.call("POST", "users", body, token=token_for(admin_user))
    assert answer.status == 400
    assert answer.body["message"] == "username Admin is taken: admin already exists (usernames ignore case)"
    assert list(User.objects.filter(username__iexact="admin").values_list("username", flat=True)) == ["admin"]


def test_admin_refuses_a_username_differing_only_by_case(client, admin_user, make_user):
    client.force_login(admin_user)
    response = client.post(
        "/admin/accounts/user/add/",
        {"username": "ADMIN", "password1": "Long-enough-pw-42", "password2": "Long-enough-pw-42", **NO_INLINE_TOKENS},
    )
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    other = make_user("other")
    renamed = client.post(
        f"/admin/accounts/user/{other.pk}/change/", {"username": "Admin", "is_active": "on", **NO_INLINE_TOKENS}
    )
    assert renamed.status_code == 200 and "already exists" in renamed.content.decode()
    assert User.objects.filter(username__iexact="admin").count() == 1
