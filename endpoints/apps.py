"""Endpoints: worker pools on dramatiq queues (built by the endpoints issue)."""

from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "endpoints"
