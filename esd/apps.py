"""The ESD wire layer and project-wide pieces; it names no other app."""

from django.apps import AppConfig


class EsdConfig(AppConfig):
    name = "esd"
    verbose_name = "ESD server"

    def ready(self) -> None:
        from pathlib import Path

        from django.conf import settings

        from . import checks  # noqa: F401  (registers the deploy checks)

        Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
