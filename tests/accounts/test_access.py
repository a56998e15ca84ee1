"""accounts.access: the one table of route-level permission rules, and the one function that enforces them (issue
27.4). The routes' cells are tests/accounts/test_permission_matrix.py's and tests/security's; this checks the table
itself and that nothing checks a route's permission strings beside it."""

import ast
import re
from pathlib import Path

import pytest

from accounts import access
from accounts.esd_permissions import PERMISSIONS

ROOT = Path(__file__).resolve().parents[2]
APPS = ("accounts", "checkpoints", "endpoints", "inferences", "esd")


def sources() -> dict[Path, str]:
    return {
        path: path.read_text()
        for app in APPS
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts and path.name != "access.py"
    }


@pytest.mark.parametrize("action", sorted(access.NEEDS))
def test_each_need_refuses_without_its_strings_and_allows_with_each(action, make_user):
    need = access.NEEDS[action]
    assert need.any_of and all(permission in PERMISSIONS for permission in need.any_of)
    nobody = make_user("nobody-" + action.replace(".", "-"))
    others = [
        p for p in PERMISSIONS if p not in need.any_of and p.split(":")[0] not in {s.split(":")[0] for s in need.any_of}
    ]
    unrelated = make_user("unrelated-" + action.replace(".", "-"), [others[0]])
    for refused in (nobody, unrelated):
        assert not need.met_by(refused)
        with pytest.raises(need.refusal) as raised:
            access.require(refused, action, field="params.creator", named="someone")
        assert raised.value.message == need.message.format(
            username=refused.username, field="params.creator", named="someone"
        )
    for index, permission in enumerate(need.any_of):
        holder = make_user(f"holder{index}-" + action.replace(".", "-"), [permission])
        access.require(holder, action)  # no refusal
        resource = permission.split(":")[0]
        everything = make_user(f"all{index}-" + action.replace(".", "-"), [f"{resource}:all"])
        assert need.met_by(everything)  # resource:all satisfies each of its resource's actions


def test_every_need_is_enforced_somewhere_and_only_known_needs_are_asked_for():
    asked = set()
    for text in sources().values():
        asked |= set(re.findall(r"\brequire\(\s*\w+,\s*\"([a-z_.]+)\"", text))
    assert asked == set(access.NEEDS)


def test_no_view_admin_or_caller_helper_checks_permission_strings_by_hand():
    """Views, admin classes and the API's request helpers ask access (or a service's object rule): a `holds(...)`
    of their own would be a second source of a route's rule."""
    offenders = []
    for path, text in sources().items():
        relative = path.relative_to(ROOT)
        if not ("api" in relative.parts or path.name in {"admin.py", "admin_helpers.py", "views.py"}):
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in {
                "holds",
                "holds_string",
            }:
                offenders.append(f"{relative}:{node.lineno}")
    assert offenders == []
