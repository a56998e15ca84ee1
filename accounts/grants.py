"""Who may see and who owns an object: django-guardian's object permissions are the one record of both.

An object's ESD visibility list (a checkpoint's `allowed_roles_or_users`, an endpoint's or a job's
`owner_group_or_role`) is a view of its `view_<model>` grants: the roles (groups) holding one, in the order they
were granted, then the users holding one, and `*` first for a checkpoint open to everyone (its `everyone` field).
Its owners hold `change_<model>` and `delete_<model>`: its creator from creation, anyone else the admin's
object-permission page gives them to. The grant tables have a direct foreign key to their object, group and user,
so deleting a role deletes its grants (nothing dangles), and every read below is one SQL query with the grants as
subqueries, whatever the number of objects.

These helpers take any model with guardian's direct-FK grant tables (`guardian.utils.get_*_obj_perms_model`).
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model, Q, QuerySet
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

from .models import User

EVERYONE = "*"
VIEW = "view"
OWNER_ACTIONS = ("change", "delete")
ATTACH_BATCH = 1000  # ids per IN list: a list of every job (ESD's limit -1) stays under SQLite's variable limit


def codename(model: type[Model], action: str) -> str:
    return f"{action}_{model._meta.model_name}"


def _tables(model: type[Model]) -> tuple[Any, Any]:
    # guardian accepts a model class as well as an instance (its stubs say instance only)
    return get_user_obj_perms_model(model), get_group_obj_perms_model(model)  # type: ignore[arg-type]


def _opens_to_everyone(model: type[Model]) -> bool:
    return any(field.name == "everyone" for field in model._meta.get_fields())


def _permission_ids(model: type[Model]) -> dict[str, int]:
    """The ids of the model's add/change/delete/view permissions by action, in one query."""
    content_type = ContentType.objects.get_for_model(model)
    rows = Permission.objects.filter(content_type=content_type).values_list("codename", "pk")
    return {codename.split("_", 1)[0]: pk for codename, pk in rows}


# Writes


def grant_new(obj: Model, *, owner: User, visible_to: Iterable[str] = (), owner_views: bool = False) -> list[str]:
    """The grants of an object just created: `owner` owns it (may change and delete it, given the ESD permission
    string for that, and always sees it), `visible_to` is its ESD visibility list of role and user names (see
    `set_visibility`), and `owner_views` adds the owner's own view grant, to the account itself: never through
    its name, which a role might share (see accounts.services' namespace rule)."""
    ids = _permission_ids(type(obj))
    user_table, _ = _tables(type(obj))
    actions = (*OWNER_ACTIONS, VIEW) if owner_views else OWNER_ACTIONS
    user_table.objects.bulk_create(
        user_table(user=owner, permission_id=ids[action], content_object=obj) for action in actions
    )
    return _grant_views(obj, list(dict.fromkeys(visible_to)), ids[VIEW])


def set_visibility(obj: Model, names: Iterable[str]) -> list[str]:
    """Replace `obj`'s view grants with those an ESD list makes: a role name grants its group, a username its user
    (a name that is both is the role), and `*` opens a checkpoint to everyone. Returns the names that matched
    nothing, which grant nothing."""
    view = _permission_ids(type(obj))[VIEW]
    user_table, group_table = _tables(type(obj))
    user_table.objects.filter(content_object=obj, permission_id=view).delete()
    group_table.objects.filter(content_object=obj, permission_id=view).delete()
    return _grant_views(obj, list(dict.fromkeys(names)), view)


def _grant_views(obj: Model, names: list[str], view: int) -> list[str]:
    obj.__dict__.pop("_visibility_names", None)  # read again on next use
    user_table, group_table = _tables(type(obj))
    groups = {group.name: group for group in Group.objects.filter(name__in=names)}
    users = {user.username: user for user in User.objects.filter(username__in=set(names) - set(groups))}
    group_table.objects.bulk_create(
        group_table(group=groups[name], permission_id=view, content_object=obj) for name in names if name in groups
    )
    user_table.objects.bulk_create(
        user_table(user=users[name], permission_id=view, content_object=obj) for name in names if name in users
    )
    if _opens_to_everyone(type(obj)):
        everyone = EVERYONE in names
        if obj.everyone != everyone:  # type: ignore[attr-defined]
            obj.everyone = everyone  # type: ignore[attr-defined]
            obj.save(update_fields=["everyone"])
    return [name for name in names if name not in groups and name not in users and name != EVERYONE]


# Reads


def attach_visibility(objects: Sequence[Model]) -> None:
    """Read the visibility lists of a page of objects in one query per grant table (names only: a user row is wide,
    and a page of jobs has three grants each), so `visibility_names` needs no query per object."""
    if not objects:
        return
    model = type(objects[0])
    user_table, group_table = _tables(model)
    view = codename(model, VIEW)
    keys = [obj.pk for obj in objects]
    names: dict[Any, list[str]] = defaultdict(list)
    for table, holder in ((group_table, "group__name"), (user_table, "user__username")):
        for start in range(0, len(keys), ATTACH_BATCH):
            rows = table.objects.filter(
                content_object_id__in=keys[start : start + ATTACH_BATCH], permission__codename=view
            ).order_by("pk")
            for key, name in rows.values_list("content_object_id", holder):
                names[key].append(name)
    for obj in objects:
        obj._visibility_names = names[obj.pk]  # type: ignore[attr-defined]


def visibility_names(obj: Model) -> list[str]:
    """The object's ESD visibility list, read from its grants (as `attach_visibility` left it, or queried): the
    roles, then the users, holding its view permission, in the order granted; `*` first when open to everyone."""
    if not hasattr(obj, "_visibility_names"):
        attach_visibility([obj])
    everyone = [EVERYONE] if getattr(obj, "everyone", False) else []
    return everyone + obj._visibility_names  # type: ignore[attr-defined]


def _granted(table: Any, which: Q) -> Q:
    """Objects with a grant in `table` matching `which`: `pk IN (SELECT content_object_id ...)`, a subquery that
    does not depend on the row, so PostgreSQL hashes it once per query instead of probing the grant table for every
    row it scans (a correlated EXISTS made a count over 100,000 checkpoints eight times slower; PostgreSQL turns an
    EXISTS under OR into this form anyway). Permissions and groups are given as ids, looked up first, so it is an
    index scan of the holders' grants, not a join over all of them."""
    return Q(pk__in=table.objects.filter(which).values("content_object_id"))


def _role_ids(roles: Q) -> list[int]:
    return list(Group.objects.filter(roles).values_list("pk", flat=True).distinct())


def access(
    model: type[Model], *, sees: User | None = None, owns: User | None = None, roles_created_by: User | None = None
) -> Q:
    """Objects of `model` that `sees` may see by ESD's rule (a view grant to it or one of its roles, plus every
    role `roles_created_by` created, as ESD's list routes extend it; or a checkpoint open to everyone), or that
    `owns` owns (a change grant to it or one of its roles). Two subqueries, whichever of the two is asked."""
    user_table, group_table = _tables(model)
    ids = _permission_ids(model)
    by_user, by_group = Q(pk__in=[]), Q(pk__in=[])
    if sees is not None:
        roles = Q(user=sees) | (Q(role__created_by=roles_created_by) if roles_created_by else Q(pk__in=[]))
        by_user |= Q(permission_id=ids[VIEW], user=sees)
        by_group |= Q(permission_id=ids[VIEW], group_id__in=_role_ids(roles))
    if owns is not None:
        by_user |= Q(permission_id=ids["change"], user=owns)
        by_group |= Q(permission_id=ids["change"], group_id__in=_role_ids(Q(user=owns)))
    found = _granted(user_table, by_user) | _granted(group_table, by_group)
    return found | Q(everyone=True) if sees is not None and _opens_to_everyone(model) else found


def owns(user: User, obj: Model) -> bool:
    model = type(obj)
    return model._default_manager.filter(access(model, owns=user), pk=obj.pk).exists()  # type: ignore[attr-defined]


def shares_a_name(model: type[Model], names: Iterable[str]) -> Q:
    """Objects whose visibility list names one of `names` (the `roles` filter of `GET /checkpoints`)."""
    names = list(names)
    user_table, group_table = _tables(model)
    view = _permission_ids(model)[VIEW]
    shared = _granted(user_table, Q(permission_id=view, user__username__in=names)) | _granted(
        group_table, Q(permission_id=view, group__name__in=names)
    )
    return shared | Q(everyone=True) if EVERYONE in names and _opens_to_everyone(model) else shared


def granted_roles(objects: QuerySet[Any], names: Iterable[str]) -> list[str]:
    """Which of the role `names` hold a view grant on one of `objects`, in `names`' order."""
    _, group_table = _tables(objects.model)
    names = list(names)
    taken = set(
        group_table.objects.filter(
            content_object__in=objects, permission__codename=codename(objects.model, VIEW), group__name__in=names
        ).values_list("group__name", flat=True)
    )
    return [name for name in names if name in taken]
