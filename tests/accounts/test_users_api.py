"""/users: ESD's bodies, messages and rules (esd-behaviour.md §3.5-3.6, §6) and architecture.md §5."""

import pytest

from accounts.models import User
from accounts.roles import IT_OPERATOR
from accounts.selectors import user_role_names


@pytest.fixture
def admin_token(admin_user, token_for):
    return token_for(admin_user)


def test_initial_creates_the_first_administrator_without_credentials(esd, db):
    User.objects.all().delete()
    body = {"username": "admin", "password": "admin-pw-1", "creator": "admin", "initial": True, "roles": ["byoc"]}
    response = esd.call("POST", "users", body)
    assert response.status == 201
    assert response.body == {
        "statusCode": 201,
        "message": "Created",
        "data": {"user": {"username": "admin", "roles": [IT_OPERATOR]}, "all_roles": [IT_OPERATOR]},
    }
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password("admin-pw-1")
    assert user_role_names([admin])[admin.pk] == [IT_OPERATOR]


def test_initial_is_refused_once_a_user_exists(esd, admin_user):
    body = {"username": "admin", "password": "taken-over", "creator": "admin", "initial": True}
    response = esd.call("POST", "users", body)
    assert response.status == 403
    assert "initial user already exists" in response.body["message"]
    admin_user.refresh_from_db()
    assert admin_user.check_password("admin-pw-1")  # ESD would have reset it


def test_create_then_list_a_user(esd, admin_token, make_role):
    make_role("byoc", ["sagemaker_endpoint:all"])
    body = {"username": "alice", "password": "A-secret-phrase-9", "creator": "admin", "roles": ["byoc", IT_OPERATOR]}
    assert esd.call("POST", "users", body, token=admin_token).body == {"statusCode": 201, "message": "Created"}
    response = esd.call("GET", "users", token=admin_token, query={"username": "alice", "show_password": "True"})
    assert response.body["data"] == {
        "users": [
            {
                "username": "alice",
                "roles": ["byoc", IT_OPERATOR],  # the order given
                "creator": "admin",
                "permissions": [
                    "checkpoint:all",
                    "inference:all",
                    "role:all",
                    "sagemaker_endpoint:all",
                    "train:all",
                    "user:all",
                ],
                "password": "********",  # never the password, whatever show_password says
            }
        ],
        "previous_evaluated_key": "not_applicable",
        "last_evaluated_key": "not_applicable",
    }


def test_passwords_are_stored_hashed(esd, admin_token):
    body = {"username": "alice", "password": "plain-secret-42", "creator": "admin", "roles": [IT_OPERATOR]}
    esd.call("POST", "users", body, token=admin_token)
    stored = User.objects.values_list("password", flat=True).get(username="alice")
    assert "plain-secret" not in stored
    assert stored.startswith(("md5$", "pbkdf2_", "argon2", "bcrypt", "scrypt"))


def test_users_are_listed_by_username(esd, admin_token, make_user):
    for name in ("zed", "bea", "carl"):
        make_user(name)
    response = esd.call("GET", "users", token=admin_token)
    names = [user["username"] for user in response.body["data"]["users"]]
    assert names == sorted(names)
    assert names[0] == "admin"


def test_unknown_role_is_400_and_nothing_is_written(esd, admin_token):
    body = {"username": "alice", "password": "Pass-phrase-42", "creator": "admin", "roles": ["admin"]}
    response = esd.call("POST", "users", body, token=admin_token)
    assert response.body == {"statusCode": 400, "message": 'user roles "admin" not exist'}
    assert not User.objects.filter(username="alice").exists()


def test_roles_are_required_when_not_initial(esd, admin_token):
    response = esd.call(
        "POST", "users", {"username": "alice", "password": "Pass-phrase-42", "creator": "admin"}, token=admin_token
    )
    assert response.body == {"statusCode": 400, "message": '[object has missing required properties (["roles"])]'}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"username": "alice", "creator": "admin", "roles": ["x"]}, 'missing required properties (["password"])'),
        ({"username": "", "password": "Pass-phrase-42", "creator": "admin", "roles": ["x"]}, "required minimum: 1"),
        (
            {"username": "a" * 65, "password": "Pass-phrase-42", "creator": "admin", "roles": ["x"]},
            "maximum allowed: 64",
        ),
        (
            {"username": "Zoë", "password": "Pass-phrase-42", "creator": "admin", "roles": ["x"]},
            "does not match input string",
        ),
        (
            {"username": "a b", "password": "Pass-phrase-42", "creator": "admin", "roles": ["x"]},
            "does not match input string",
        ),
        (
            {"username": "al", "password": "Pass-phrase-42", "creator": "admin", "roles": ["x"], "is_superuser": True},
            "not allowed",
        ),
        ({"username": "al", "password": 5, "creator": "admin", "roles": ["x"]}, "instance type (integer)"),
        (
            {"username": "al", "password": "Pass-phrase-42", "creator": "admin", "roles": ["x"], "initial": "yes"},
            'allowed: ["boolean"]',
        ),
        ({"username": "al", "password": "x" * 129, "creator": "admin", "roles": ["x"]}, "maximum allowed: 128"),
    ],
)
def test_bad_bodies_are_400_and_write_nothing(esd, admin_token, body, fragment):
    before = User.objects.count()
    response = esd.call("POST", "users", body, token=admin_token)
    assert response.status == 400
    assert fragment in response.body["message"]
    assert User.objects.count() == before


def test_permissions_field_is_accepted_and_ignored(esd, admin_token, make_role):
    make_role("viewer", ["train:list"])
    body = {
        "username": "al",
        "password": "Pass-phrase-42",
        "creator": "admin",
        "roles": ["viewer"],
        "permissions": ["user:all"],
    }
    assert esd.call("POST", "users", body, token=admin_token).status == 201
    assert not User.objects.get(username="al").has_perm("accounts.esd_user_all")


def test_creator_cannot_hand_out_permissions_it_lacks(esd, make_user, make_role, token_for):
    make_role("powerful", ["checkpoint:all"])
    creator = make_user("maker", ["user:create"])
    body = {"username": "al", "password": "Pass-phrase-42", "creator": "maker", "roles": ["powerful"]}
    response = esd.call("POST", "users", body, token=token_for(creator))
    assert response.body == {
        "statusCode": 403,
        "message": "creator has no permission to assign permission [checkpoint:all] to others",
    }


def test_only_the_creator_or_user_all_may_overwrite(esd, make_user, make_role, token_for):
    make_role("viewer", ["user:create"])
    make_user("someone", creator="admin")
    creator = make_user("maker", ["user:create"])
    body = {"username": "someone", "password": "Pass-phrase-42", "creator": "maker", "roles": ["viewer"]}
    response = esd.call("POST", "users", body, token=token_for(creator))
    assert response.body == {
        "statusCode": 400,
        "message": "username someone has already exists, creator maker does not have permissions to change it",
    }


def test_overwrite_transfers_ownership_and_replaces_password_and_roles(esd, admin_token, make_user, make_role):
    make_role("viewer", ["train:list"])
    target = make_user("someone", roles=[IT_OPERATOR], creator="other")
    body = {"username": "someone", "password": "new-pass-phrase-7", "creator": "admin", "roles": ["viewer"]}
    assert esd.call("POST", "users", body, token=admin_token).status == 201
    target.refresh_from_db()
    assert target.creator == "admin"
    assert target.check_password("new-pass-phrase-7")
    assert user_role_names([target])[target.pk] == ["viewer"]


def test_superusers_can_only_be_changed_by_superusers(esd, make_user, token_for, admin_user):
    manager = make_user("manager", roles=[IT_OPERATOR])  # user:all, but not a superuser
    body = {"username": "admin", "password": "hijack", "creator": "manager", "roles": [IT_OPERATOR]}
    response = esd.call("POST", "users", body, token=token_for(manager))
    assert response.status == 403
    assert "only a superuser" in response.body["message"]
    admin_user.refresh_from_db()
    assert admin_user.check_password("admin-pw-1")


def test_delete_users(esd, admin_token, make_user):
    make_user("a")
    make_user("b")
    response = esd.call("DELETE", "users", {"user_name_list": ["a", "b", "test"]}, token=admin_token)
    assert (response.status, response.raw) == (204, b"")
    assert not User.objects.filter(username__in=["a", "b"]).exists()


def test_deleting_a_user_revokes_its_tokens(esd, admin_token, make_user, token_for):
    victim = make_user("victim")
    victim_token = token_for(victim)
    assert esd.call("GET", "users", token=victim_token).status == 200
    esd.call("DELETE", "users", {"user_name_list": ["victim"]}, token=admin_token)
    assert esd.call("GET", "users", token=victim_token).status == 401


def test_a_user_cannot_delete_itself(esd, admin_token, make_user):
    make_user("other")
    response = esd.call("DELETE", "users", {"user_name_list": ["other", "admin"]}, token=admin_token)
    assert response.status == 400
    assert "cannot delete yourself" in response.body["message"]
    assert User.objects.filter(username="other").exists()  # all or nothing


def test_the_last_it_operator_cannot_be_deleted(esd, make_user, token_for, admin_user):
    admin_user.is_superuser = False
    admin_user.save()
    manager = make_user("manager", ["user:all"])
    response = esd.call("DELETE", "users", {"user_name_list": ["admin"]}, token=token_for(manager))
    assert response.status == 400
    assert "no active IT Operator user would be left" in response.body["message"]
    assert User.objects.filter(username="admin").exists()


def test_the_last_it_operator_cannot_lose_the_role(esd, admin_token, make_role, admin_user):
    make_role("viewer", ["train:list"])
    body = {"username": "admin", "password": "Pass-phrase-42", "creator": "admin", "roles": ["viewer"]}
    response = esd.call("POST", "users", body, token=admin_token)
    assert response.status == 400
    assert "no active IT Operator user would be left" in response.body["message"]
    assert user_role_names([admin_user])[admin_user.pk] == [IT_OPERATOR]


def test_a_second_it_operator_may_be_deleted(esd, admin_token, make_user):
    make_user("second", roles=[IT_OPERATOR])
    assert esd.call("DELETE", "users", {"user_name_list": ["second"]}, token=admin_token).status == 204


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, 'object has missing required properties (["user_name_list"])'),
        ({"user_name_list": [""]}, "required minimum: 1"),
        ({"user_name_list": "admin"}, "instance type (string)"),
    ],
)
def test_delete_bad_bodies(esd, admin_token, body, fragment):
    response = esd.call("DELETE", "users", body, token=admin_token)
    assert response.status == 400
    assert fragment in response.body["message"]


def test_list_holder_sees_users_it_created(esd, make_user, token_for):
    viewer = make_user("viewer", ["user:list"])
    make_user("child", creator="viewer")
    make_user("stranger", creator="admin")
    response = esd.call("GET", "users", token=token_for(viewer))
    assert sorted(user["username"] for user in response.body["data"]["users"]) == ["child", "viewer"]


def test_deactivated_users_cannot_call(esd, make_user, token_for):
    user = make_user("sleeper", ["user:all"])
    token = token_for(user)
    user.is_active = False
    user.save()
    answer = esd.call("GET", "users", token=token)
    assert answer.status == 401 and "invalid or revoked (or its user is deactivated)" in answer.body["message"]


def test_resetting_another_users_password_follows_the_act_as_rule(esd, make_role, make_user, token_for):
    """A `user:all` holder who may not act as alice (she holds inference:all, they do not) cannot set her password
    over the API either, as the admin refuses it: whoever knows her password reads her jobs as her."""
    make_user("alice", ["inference:all"], password="alice-own-pw-1")
    make_role("viewers", ["role:list"])  # a role morgan may hand out
    manager = make_user("morgan", ["user:all", "role:list"])
    body = {"username": "alice", "password": "taken-over-pw-1", "creator": "morgan", "roles": ["viewers"]}
    refused = esd.call("POST", "users", body, token=token_for(manager))
    assert refused.status == 403
    assert "morgan may not act as alice: alice holds [inference:all]" in refused.body["message"]
    assert User.objects.get(username="alice").check_password("alice-own-pw-1")


@pytest.mark.parametrize(
    "password, rule",
    [
        ("a", "too short"),
        ("12345678901", "entirely numeric"),
        ("password", "too common"),
        ("alice-smith", "too similar to the username"),
    ],
)
def test_the_api_applies_the_admins_password_rules(esd, admin_token, make_role, password, rule):
    # Issue 26.14: the admin applied AUTH_PASSWORD_VALIDATORS and the API accepted `a`, `1` and `password`.
    make_role("viewer", ["train:list"])
    body = {"username": "alice-smith", "password": password, "creator": "admin", "roles": ["viewer"]}
    answer = esd.call("POST", "users", body, token=admin_token)
    assert answer.status == 400
    assert answer.body["message"].startswith("password refused: ") and rule in answer.body["message"]
    assert not User.objects.filter(username="alice-smith").exists()


def test_a_weak_password_is_refused_for_the_first_administrator_too(esd, db):
    body = {"username": "root", "password": "12345", "creator": "root", "initial": True, "roles": [IT_OPERATOR]}
    answer = esd.call("POST", "users", body)
    assert answer.status == 400 and "password refused: " in answer.body["message"]
    assert not User.objects.exists()


def test_delete_tells_nothing_of_users_the_caller_may_not_manage(esd, make_user, token_for):
    # Issue 26.19: a refusal naming another creator's user confirmed it existed; it is now ignored like a name
    # that matches nobody, and deleted nothing.
    make_user("existing", creator="admin")
    maker = token_for(make_user("maker", ["user:create"]))
    hidden = esd.call("DELETE", "users", {"user_name_list": ["existing"]}, token=maker)
    unknown = esd.call("DELETE", "users", {"user_name_list": ["never-was"]}, token=maker)
    assert (hidden.status, hidden.raw) == (unknown.status, unknown.raw) == (204, b"")
    assert User.objects.filter(username="existing").exists()
