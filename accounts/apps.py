"""Accounts: users, roles (Django groups), ESD permission strings, API tokens, authentication."""

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_builtin_roles(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    from accounts import services

    services.roles_ensure_builtin()


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self) -> None:
        from accounts import schema  # noqa: F401  (registers the OpenAPI authentication extensions)

        # After migrate (and after a test-database flush) the built-in roles exist, without a manual step.
        # post_migrate rather than a data migration: the permission rows they use are created by post_migrate.
        post_migrate.connect(_ensure_builtin_roles, sender=self, dispatch_uid="accounts.ensure_builtin_roles")
