"""Checkpoints: model files kept in object storage, uploaded by URL or by multipart upload."""

from django.apps import AppConfig


class CheckpointsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "checkpoints"

    def ready(self) -> None:
        from accounts.esd_permissions import register_resource_models

        register_resource_models("checkpoint", "checkpoints.checkpoint")
