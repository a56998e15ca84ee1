"""What each action asks of the user it is done as, in one table, and the one function that enforces it (issue 27.4).

Every route-level permission rule of the ESD API and the admin is a row of NEEDS: which permission strings let a
user do it (any one of them; `resource:all` satisfies each of its resource's), and ESD's answer to a user who holds
none (the kind of refusal and its message, as esd-behaviour.md §3 has them). Services, selectors and the API's
request helpers call `require` with the action's name where their actor is known (the API's actor may come from a
body field in esd-1.4 mode, and ESD answers some checks before others, so the point in the flow is the action's);
the admin reaches the same rules through those services. The rule itself lives only here. Object-level rules
(owning a checkpoint, seeing a job) stay with the objects' apps (their grants and `may_change`), built on `holds`.

tests/accounts/test_permission_matrix.py and tests/security prove the cells; tests/accounts/test_access.py holds
that every row is enforced and that no view, admin class or request helper checks a permission string by hand.
"""

from dataclasses import dataclass

from esd.errors import Forbidden, Invalid, Refused

from .models import User
from .permissions import holds_string


@dataclass(frozen=True)
class Need:
    """Any one of `any_of` lets a user do the action; without, `refusal(message)` (`{username}`: the actor's; other
    fields: the details `require` is given)."""

    any_of: tuple[str, ...]
    refusal: type[Refused]
    message: str
    routes: tuple[str, ...]  # where the action is done: API routes, and the admin's pages

    def met_by(self, user: User) -> bool:
        return any(holds_string(user, permission) for permission in self.any_of)


NEEDS: dict[str, Need] = {
    "role.write": Need(
        ("role:create",),
        Invalid,
        "creator {username} not have permission to create role",
        ("POST /roles", "admin: add or change a role"),
    ),
    "user.manage": Need(
        ("user:create",),
        Forbidden,
        "creator {username} does not have permission to manage the user",
        ("POST /users", "DELETE /users", "admin: add, change or delete a user"),
    ),
    "checkpoint.list": Need(
        ("checkpoint:list",),
        Forbidden,
        "user {username} has no checkpoint:list permission",
        ("GET /checkpoints",),
    ),
    "checkpoint.create": Need(
        ("checkpoint:create",),
        Invalid,
        "user has no permissions to create a model",
        ("POST /checkpoints", "admin: add a checkpoint (upload or URL)", "import_checkpoint"),
    ),
    "endpoint.create": Need(
        ("sagemaker_endpoint:create",),
        Forbidden,
        "Creator {username} has no permission to create Sagemaker",
        ("POST /endpoints", "admin: add an endpoint"),
    ),
    "endpoint.delete": Need(
        ("sagemaker_endpoint:create",),
        Forbidden,
        "User {username} has no permission to delete a Sagemaker endpoint",
        ("DELETE /endpoints", "admin: delete an endpoint"),
    ),
    "inference.list": Need(
        ("inference:list", "inference:create"),
        Forbidden,
        "user has no permissions to list inferences (inference:list)",
        ("GET /inferences",),
    ),
    "inference.create": Need(
        ("inference:create",),
        Forbidden,
        "user has no permissions to create an inference (inference:create)",
        ("POST /inferences", "admin: Generate"),
    ),
    "user.act_for_another": Need(
        ("user:all",),
        Forbidden,
        '{field} "{named}" is not the caller "{username}": only a user holding user:all may act for another user',
        ("a body's creator/username field naming another user, in token mode",),
    ),
    "user.list_as_another": Need(
        ("user:all",),
        Forbidden,
        'username "{named}" is not the caller: only a user holding user:all may list as another',
        ("GET /checkpoints, /endpoints, /inferences ?username= naming another user, in token mode",),
    ),
}


def require(user: User, action: str, **details: str) -> None:
    """Refuse (esd.errors) unless `user` may do `action` (a key of NEEDS), with ESD's answer for it."""
    need = NEEDS[action]
    if not need.met_by(user):
        raise need.refusal(need.message.format(username=user.username, **details))
