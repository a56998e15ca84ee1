"""Checkpoints: model files kept in object storage (built by the checkpoints issue)."""

from django.apps import AppConfig


class CheckpointsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "checkpoints"
