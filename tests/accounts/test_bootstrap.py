"""esd_bootstrap: idempotent built-in roles, an administrator on request, and the first-run credentials."""

import io
import re

from django.core.management import call_command

from accounts.models import ApiToken, Role, User
from accounts.roles import IT_OPERATOR
from accounts.selectors import role_permission_strings, user_role_names


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("esd_bootstrap", *args, stdout=out)
    return out.getvalue()


def test_built_in_roles_exist_after_migrate(db):
    role = Role.objects.get(group__name=IT_OPERATOR)
    assert role.builtin
    assert len(role_permission_strings(role)) == 6


def test_bootstrap_is_idempotent_and_repairs_the_built_in_role(db):
    role = Role.objects.get(group__name=IT_OPERATOR)
    role.group.permissions.clear()
    run()
    run()
    assert Role.objects.filter(group__name=IT_OPERATOR).count() == 1
    assert len(role_permission_strings(Role.objects.get(group__name=IT_OPERATOR))) == 6


def test_username_and_password_make_an_administrator_who_can_use_the_admin(db, client):
    run("--username", "boss", "--password", "s3cret-pass")
    run("--username", "boss", "--password", "s3cret-pass")  # again: nothing duplicated
    boss = User.objects.get(username="boss")
    assert user_role_names([boss])[boss.pk] == [IT_OPERATOR]
    assert client.login(username="boss", password="s3cret-pass")
    assert client.get("/admin/").status_code == 200


def test_first_run_prints_credentials_once(db, client, esd):
    output = run("--first-run")
    password = re.search(r"admin login:\s+admin / (\S+)", output).group(1)
    token = re.search(r"API token:\s+(\S+)", output).group(1)
    assert client.login(username="admin", password=password)
    assert esd.call("GET", "roles", token=token).status == 200
    again = run("--first-run")
    assert "admin login" not in again
    assert "An administrator already exists (admin)" in again
    assert "python manage.py create_api_token admin" in again and "python manage.py changepassword admin" in again
    assert ApiToken.objects.count() == 1
