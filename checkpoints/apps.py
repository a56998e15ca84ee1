"""Checkpoints: model files kept in object storage, uploaded by URL or by multipart upload."""

from django.apps import AppConfig


class CheckpointsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "checkpoints"

    def ready(self) -> None:
        from accounts.esd_permissions import register_resource_models

        from . import actors  # noqa: F401  registers the app's actors, which services queue by name (esd.queues)

        register_resource_models("checkpoint", "checkpoints.checkpoint")

        from checkpoints.services import checkpoint_resume_downloads, checkpoint_upload_refused
        from esd.signals import recover_waiting_work, upload_refused

        recover_waiting_work.connect(checkpoint_resume_downloads, dispatch_uid="checkpoints.resume_downloads")
        upload_refused.connect(checkpoint_upload_refused, dispatch_uid="checkpoints.upload_refused")
