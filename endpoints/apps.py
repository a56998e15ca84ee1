"""Endpoints: worker pools on dramatiq queues, their workers' heartbeats, and the autoscaling signal."""

from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "endpoints"

    def ready(self) -> None:
        from accounts.esd_permissions import register_resource_models

        from . import actors  # noqa: F401  registers the app's actors, which services queue by name (esd.queues)

        register_resource_models("sagemaker_endpoint", "endpoints.endpoint", "endpoints.worker")
