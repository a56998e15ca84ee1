"""ESD's 18 permission strings (`resource:action`) and the Django permissions that mirror them.

A role is a Django Group; holding `checkpoint:all` means its group holds the permission
`accounts.esd_checkpoint_all` (declared on Role.Meta), plus the model permissions of the models that resource
covers, so the admin shows a person what the role allows. Apps register their models for a resource in their
AppConfig.ready() (register_resource_models), since accounts names no later app.
"""

RESOURCES = ("user", "role", "checkpoint", "sagemaker_endpoint", "inference", "train")
ACTIONS = ("all", "create", "list")
PERMISSIONS = tuple(f"{resource}:{action}" for resource in RESOURCES for action in ACTIONS)
ALL_PERMISSIONS = tuple(f"{resource}:all" for resource in RESOURCES)

# Django model permissions each action grants on a resource's models: `all` manages them, `create` adds,
# `list` views.
ACTION_MODEL_PERMISSIONS = {
    "all": ("add", "change", "delete", "view"),
    "create": ("add",),
    "list": ("view",),
}

_resource_models: dict[str, list[str]] = {
    "user": ["accounts.user", "accounts.apitoken"],
    "role": ["accounts.role"],
}


def codename(permission: str) -> str:
    """`checkpoint:all` → `esd_checkpoint_all`."""
    resource, action = permission.split(":")
    return f"esd_{resource}_{action}"


def from_codename(name: str) -> str | None:
    """`esd_checkpoint_all` → `checkpoint:all`; None for any other codename."""
    for permission in PERMISSIONS:
        if codename(permission) == name:
            return permission
    return None


def meta_permissions() -> list[tuple[str, str]]:
    return [(codename(permission), f"ESD {permission}") for permission in PERMISSIONS]


def register_resource_models(resource: str, *models: str) -> None:
    """Mirror `resource:*` onto these models' Django permissions (`app_label.modelname`)."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown ESD resource {resource!r}")
    for model in models:
        if model not in _resource_models.setdefault(resource, []):
            _resource_models[resource].append(model)


def model_permissions(permission: str) -> list[tuple[str, str]]:
    """The (app_label, codename) pairs that `permission` grants, its own `esd_*` codename first."""
    resource, action = permission.split(":")
    granted = [("accounts", codename(permission))]
    for model in _resource_models.get(resource, []):
        app_label, model_name = model.split(".")
        granted.extend((app_label, f"{verb}_{model_name}") for verb in ACTION_MODEL_PERMISSIONS[action])
    return granted


def sort_key(permission: str) -> int:
    return PERMISSIONS.index(permission)
