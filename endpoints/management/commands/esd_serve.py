"""The embedded all-in-one server behind `make run`: the web app and API on waitress (a production-grade,
threaded WSGI server). Worker threads for endpoints and downloads join it with the endpoints issue."""

import logging
import os
from typing import Any

from django.core.management.base import BaseCommand
from waitress import serve

from esd.wsgi import application

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Serve the admin and the ESD API (embedded set-up: SQLite, local storage, in-process broker)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--threads", type=int, default=8, help="Request threads.")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.conf import settings

        host, port = options["host"], options["port"]
        if "ESD_PUBLIC_URL" not in os.environ:
            # The local store's signed URLs must point at this very server unless told otherwise.
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 (a comparison, not a bind)
            settings.ESD_PUBLIC_URL = f"http://{shown}:{port}"
        self.stdout.write(
            f"ESD server on http://{host}:{port}/  (admin: /admin/, API: /{settings.ESD_API_PREFIX}, "
            f"docs: /{settings.ESD_API_PREFIX}docs)"
        )
        serve(application, host=host, port=port, threads=options["threads"], ident="esd-server")
