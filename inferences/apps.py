"""Inferences: jobs, their actor and the torch engine (built by the inference issues)."""

from django.apps import AppConfig


class InferencesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "inferences"
