"""The data migrations that turned ESD's JSON visibility lists into guardian grants (accounts/grants.py), one per
app, on historical models. Kept apart from grants.py because a migration must not use today's models."""

from collections.abc import Callable
from typing import Any

from django.contrib.auth.management import create_permissions

EVERYONE = "*"
Step = Callable[[Any, Any], None]


def _permissions(apps: Any, app_label: str, model_name: str) -> dict[str, Any]:
    """The model's view/change/delete permissions, created first when the database has none yet (permissions are
    otherwise made after the last migration, and this one runs before it)."""
    for config in apps.get_app_configs():
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None
    content_type = apps.get_model("contenttypes", "ContentType").objects.get(
        app_label=app_label, model=model_name.lower()
    )
    permissions = apps.get_model("auth", "Permission").objects.filter(content_type=content_type)
    return {permission.codename.split("_", 1)[0]: permission for permission in permissions}


def lists_to_grants(app_label: str, model_name: str, field: str, *, everyone: bool) -> Step:
    """Each object's list becomes view grants: role names to their groups, usernames to their users, `*` (and, by
    ESD's rule that an empty list hides nothing, an empty list) to `everyone` where the model has it. Names that
    match nothing (roles deleted since) grant nothing. Creators get the owner's change and delete grants."""

    def forward(apps: Any, schema_editor: Any) -> None:
        model = apps.get_model(app_label, model_name)
        if not model.objects.exists():
            return
        perms = _permissions(apps, app_label, model_name)
        user_table = apps.get_model(app_label, f"{model_name}UserObjectPermission")
        group_table = apps.get_model(app_label, f"{model_name}GroupObjectPermission")
        groups = {group.name: group for group in apps.get_model("auth", "Group").objects.all()}
        users_model = apps.get_model("accounts", "User")
        user_table.objects.filter(permission=perms["view"]).delete()
        group_table.objects.filter(permission=perms["view"]).delete()
        for obj in model.objects.all().iterator():
            names = list(dict.fromkeys(getattr(obj, field) or []))
            users = {user.username: user for user in users_model.objects.filter(username__in=names)}
            for name in names:
                if name in groups:
                    group_table.objects.create(group=groups[name], permission=perms["view"], content_object=obj)
                elif name in users:
                    user_table.objects.create(user=users[name], permission=perms["view"], content_object=obj)
            if everyone and (not names or EVERYONE in names):
                obj.everyone = True
                obj.save(update_fields=["everyone"])
            if obj.created_by_id is not None:
                for action in ("change", "delete"):
                    user_table.objects.get_or_create(
                        user_id=obj.created_by_id, permission=perms[action], content_object=obj
                    )

    return forward


def grants_to_lists(app_label: str, model_name: str, field: str, *, everyone: bool) -> Step:
    """The way back: each object's list from its view grants (groups, then users, as accounts/grants.py reads)."""

    def backward(apps: Any, schema_editor: Any) -> None:
        model = apps.get_model(app_label, model_name)
        user_table = apps.get_model(app_label, f"{model_name}UserObjectPermission")
        group_table = apps.get_model(app_label, f"{model_name}GroupObjectPermission")
        view = f"view_{model_name.lower()}"
        for obj in model.objects.all().iterator():
            grants = group_table.objects.filter(content_object=obj, permission__codename=view).order_by("pk")
            names = [grant.group.name for grant in grants]
            grants = user_table.objects.filter(content_object=obj, permission__codename=view).order_by("pk")
            names += [grant.user.username for grant in grants]
            if everyone and obj.everyone:
                names.insert(0, EVERYONE)
            setattr(obj, field, names)
            obj.save(update_fields=[field])

    return backward
