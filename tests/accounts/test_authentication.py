"""Both ESD_AUTH_MODEs, the API key and the order of checks (esd-behaviour.md §1.6, §2; architecture.md §4)."""

import io

import pytest
from django.core.management import call_command

from accounts.authentication import InvalidToken
from accounts.models import ApiToken, Role, User
from accounts.roles import IT_OPERATOR
from tests.conftest import esd_hex

API_KEY = "A" * 20


# --- token mode (default) ----------------------------------------------------------------------------------------


def test_default_mode_is_token(settings):
    assert settings.ESD_AUTH_MODE == "token"


def test_a_valid_token_authenticates_its_owner(esd, admin_user, token_for):
    response = esd.call("GET", "users", token=token_for(admin_user), query={"username": "admin"})
    assert response.body["data"]["users"][0]["username"] == "admin"


INVALID_TOKEN = {"message": InvalidToken.default_detail}


@pytest.mark.parametrize(
    ("header", "body"),
    [
        ("Bearer nonsense", INVALID_TOKEN),
        ("Basic YWRtaW46YWRtaW4=", INVALID_TOKEN),
        (esd_hex("admin"), INVALID_TOKEN),
        ("Bearer ", {"message": "Unauthorized"}),  # nothing sent: ESD's gateway answer
    ],
)
def test_bad_tokens_are_401_and_say_whether_one_was_sent(esd, admin_user, header, body):
    response = esd.call("GET", "users", headers={"Authorization": header})
    assert (response.status, response.body) == (401, body)
    assert "invalid or revoked" in InvalidToken.default_detail


def test_a_revoked_token_is_told_apart_from_a_missing_one(esd, admin_user, token_for):
    token = token_for(admin_user)
    ApiToken.objects.filter(user=admin_user).delete()
    assert esd.call("GET", "users", token=token).body == INVALID_TOKEN
    assert esd.call("GET", "users").body == {"message": "Unauthorized"}


def test_unknown_body_keys_are_named_in_token_mode_and_kept_for_esd_clients(esd, settings, admin_user, token_for):
    body = {"task_type": "txt2img", "inference_type": "Async", "models": {}, "sampler_nmae": "Euler a"}
    refused = esd.call("POST", "inferences", body, token=token_for(admin_user))
    assert refused.status == 400
    assert 'not allowed by the schema: ["sampler_nmae"]' in refused.body["message"]
    settings.ESD_AUTH_MODE = "esd-1.4"
    kept = esd.call("POST", "inferences", {**body, "user_id": "admin"}, headers={"username": "admin"})
    assert "not allowed by the schema" not in str(kept.body)


def test_the_esd_hex_bearer_does_not_work_in_token_mode(esd, admin_user):
    response = esd.call("GET", "users", token=esd_hex("admin"))
    assert response.status == 401


def test_a_revoked_token_is_401(esd, admin_user, token_for):
    token = token_for(admin_user)
    ApiToken.objects.filter(user=admin_user).delete()
    assert esd.call("GET", "users", token=token).status == 401


def test_tokens_are_stored_hashed(admin_user, token_for):
    token = token_for(admin_user)
    row = ApiToken.objects.get(user=admin_user)
    stored = [row.digest, row.hint, row.name]
    assert token not in stored
    assert len(row.digest) == 64
    assert token.startswith(row.hint)


def test_last_use_is_recorded(esd, admin_user, token_for):
    token = token_for(admin_user)
    esd.call("GET", "roles", token=token)
    assert ApiToken.objects.get(user=admin_user).last_used_at is not None


def test_auth_token_route_issues_a_working_token(esd, admin_user):
    response = esd.call("POST", "auth/token", {"username": "admin", "password": "admin-pw-1"})
    assert response.status == 201
    token = response.body["data"]["token"]
    assert esd.call("GET", "roles", token=token).status == 200


@pytest.mark.parametrize(
    "body",
    [{"username": "admin", "password": "wrong"}, {"username": "ghost", "password": "x"}],
)
def test_auth_token_route_refuses_bad_credentials(esd, admin_user, body):
    response = esd.call("POST", "auth/token", body)
    assert response.body == {"statusCode": 400, "message": "username or password is incorrect"}
    assert not ApiToken.objects.exists()


def test_auth_token_route_is_rate_limited(esd, admin_user, settings):
    statuses = [esd.call("POST", "auth/token", {"username": "admin", "password": "no"}).status for _ in range(12)]
    assert statuses[:10] == [400] * 10
    assert statuses[10:] == [429, 429]
    limited = esd.call("POST", "auth/token", {"username": "admin", "password": "no"})
    assert limited.body["statusCode"] == 429
    assert int(limited.headers["Retry-After"]) > 0


def test_create_api_token_prints_only_the_token(esd, admin_user):
    out = io.StringIO()
    call_command("create_api_token", "admin", stdout=out)
    token = out.getvalue().strip()
    assert "\n" not in token and token.startswith("esd_")
    assert esd.call("GET", "roles", token=token).status == 200


def test_create_api_token_refuses_unknown_users(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no active user"):
        call_command("create_api_token", "ghost")


def test_session_login_works_on_the_api(client, admin_user, esd):
    esd.client.force_login(admin_user)
    assert esd.call("GET", "roles").status == 200


def test_session_writes_need_the_csrf_token(admin_user):
    from django.test import Client

    from tests.conftest import PREFIX

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(PREFIX + "roles", data="{}", content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["message"]


def test_session_writes_with_the_csrf_token_work(admin_user):
    # Issue 26.18: with the cookie and the header, the CSRF check read the view's (absent) parsers and answered 415.
    from django.test import Client

    from tests.conftest import PREFIX

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    client.get("/admin/")  # its logout form sets the cookie
    token = client.cookies["csrftoken"].value
    body = '{"role_name": "browser-made", "creator": "admin", "permissions": ["train:list"]}'
    response = client.post(PREFIX + "roles", data=body, content_type="application/json", headers={"X-CSRFToken": token})
    assert response.json() == {"statusCode": 201, "message": "role created"}
    wrong = client.post(PREFIX + "roles", data=body, content_type="application/json", headers={"X-CSRFToken": "x" * 32})
    assert wrong.status_code == 403 and "CSRF" in wrong.json()["message"]


# --- the API key and the order of checks ------------------------------------------------------------------------


@pytest.fixture
def keyed(settings):
    settings.ESD_API_KEY = API_KEY
    return settings


def test_no_headers_on_a_caller_route_is_401_before_the_key(esd, keyed, admin_user):
    assert esd.call("GET", "users").body == {"message": "Unauthorized"}


def test_no_headers_on_a_key_only_route_is_403(esd, keyed):
    assert (esd.call("GET", "ping").status, esd.call("GET", "ping").body) == (403, {"message": "Forbidden"})


def test_a_wrong_key_with_good_credentials_is_403(esd, keyed, admin_user, token_for):
    response = esd.call("GET", "users", token=token_for(admin_user), headers={"x-api-key": "wrong"})
    assert (response.status, response.body) == (403, {"message": "Forbidden"})


def test_a_bad_body_with_a_good_key_is_400_but_without_a_key_403(esd, keyed, admin_user, token_for):
    token = token_for(admin_user)
    assert esd.call("DELETE", "users", {}, token=token, headers={"x-api-key": API_KEY}).status == 400
    assert esd.call("DELETE", "users", {}, token=token).status == 403


def test_the_key_header_is_case_insensitive(esd, keyed):
    assert esd.call("GET", "ping", headers={"X-API-KEY": API_KEY}).status == 200


# --- esd-1.4 mode -------------------------------------------------------------------------------------------------


def test_esd_mode_accepts_the_hex_username_bearer(esd, esd_mode, admin_user):
    for bearer in (esd_hex("admin"), esd_hex("admin").lower(), f"Bearer {esd_hex('admin')}"):
        response = esd.call("GET", "users", headers={"Authorization": bearer}, query={"username": "admin"})
        assert response.status == 200, bearer
        assert response.body["data"]["users"][0]["username"] == "admin"


def test_esd_mode_accepts_the_username_header(esd, esd_mode, admin_user):
    response = esd.call("GET", "users", headers={"username": "admin"})
    assert response.status == 200


def test_esd_mode_undecodable_bearer_is_401_not_500(esd, esd_mode):
    for bearer in ("XYZ", "ABC", "FF"):
        assert esd.call("GET", "users", token=bearer).body == {"message": "Unauthorized"}


def test_esd_mode_unknown_bearer_user_is_the_routes_400(esd, esd_mode, admin_user):
    response = esd.call("GET", "users", token=esd_hex("bad_user"))
    assert response.body == {"statusCode": 400, "message": 'user: "bad_user" not exist'}


def test_esd_mode_api_tokens_do_not_work(esd, esd_mode, admin_user, token_for):
    assert esd.call("GET", "users", token=token_for(admin_user)).status == 401


def test_esd_mode_post_roles_needs_no_bearer_and_acts_as_the_body_creator(esd, esd_mode, admin_user):
    body = {"role_name": "byoc", "creator": "admin", "permissions": ["sagemaker_endpoint:all"]}
    assert esd.call("POST", "roles", body).body == {"statusCode": 201, "message": "role created"}
    assert Role.objects.get(group__name="byoc").creator == "admin"


def test_esd_mode_post_roles_unknown_creator(esd, esd_mode, admin_user):
    body = {"role_name": "x", "creator": "bad_creator", "permissions": ["train:all"]}
    assert esd.call("POST", "roles", body).body == {"statusCode": 400, "message": "creator bad_creator not exist"}


def test_esd_mode_post_users_needs_a_bearer_but_acts_as_the_body_creator(esd, esd_mode, admin_user, make_user):
    make_user("nobody")
    body = {"username": "alice", "password": "Pass-phrase-42", "creator": "admin", "roles": [IT_OPERATOR]}
    assert esd.call("POST", "users", body).body == {"message": "Unauthorized"}
    # The bearer only has to be present (ESD 1.4.0): the body's creator is the one whose rights count.
    response = esd.call("POST", "users", body, token=esd_hex("nobody"))
    assert response.body == {"statusCode": 201, "message": "Created"}
    assert User.objects.get(username="alice").creator == "admin"


def test_esd_mode_permissions_are_still_checked(esd, esd_mode, make_user, admin_user):
    make_user("weak")
    body = {"role_name": "x", "creator": "weak", "permissions": ["train:all"]}
    assert esd.call("POST", "roles", body).body == {
        "statusCode": 400,
        "message": "creator weak not have permission to create role",
    }
    response = esd.call("DELETE", "roles", {"role_name_list": ["x"]}, token=esd_hex("weak"))
    assert response.status == 403


def test_esd_mode_delete_roles_needs_a_caller(esd, esd_mode, admin_user):
    assert esd.call("DELETE", "roles", {"role_name_list": ["x"]}).body == {"message": "Unauthorized"}


def test_esd_mode_the_webui_first_run_works_once(esd, esd_mode, db):
    body = {"username": "admin", "password": "admin-pw-1", "creator": "admin", "initial": True, "roles": [IT_OPERATOR]}
    assert esd.call("POST", "users", body, token=esd_hex("admin")).status == 201
    assert esd.call("POST", "users", body, token=esd_hex("admin")).status == 403


def test_esd_mode_deactivated_user_is_unknown(esd, esd_mode, make_user):
    make_user("sleeper", ["user:all"], is_active=False)
    response = esd.call("GET", "users", headers={"username": "sleeper"})
    assert response.body == {"statusCode": 400, "message": 'user: "sleeper" not exist'}


def test_esd_mode_without_a_key_needs_a_user_where_the_key_alone_would_do(esd, esd_mode, admin_user):
    """Without ESD_API_KEY "the key holder" is anybody: the routes ESD clients call with the key alone need a user."""
    job = "00000000-0000-0000-0000-000000000000"
    assert esd.call("GET", f"inferences/{job}").body == {"message": "Unauthorized"}
    assert esd.call("DELETE", "inferences", {"inference_id_list": [job]}).body == {"message": "Unauthorized"}
    assert esd.call("PUT", f"inferences/{job}/start").body == {"message": "Unauthorized"}
    assert esd.call("GET", f"inferences/{job}", headers={"username": "admin"}).status == 404  # a user: served
