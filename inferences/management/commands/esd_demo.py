"""`python manage.py esd_demo FILE.safetensors`: what a first `make run` needs to generate an image at once.

Imports FILE as an Active Stable-diffusion checkpoint visible to everyone (unless a checkpoint of that name
exists), and creates an Async endpoint `esd-async-local` for the IT Operator role (unless any endpoint exists),
which esd_serve's worker threads then serve. Idempotent.
"""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import grants
from accounts.models import User
from accounts.roles import IT_OPERATOR
from checkpoints import services as checkpoint_services
from checkpoints.models import CheckpointFile
from endpoints import services as endpoint_services
from endpoints.models import Endpoint
from esd.errors import Refused
from esd.storage import CHUNK


class Command(BaseCommand):
    help = "Import a demo checkpoint and create a local endpoint, if none exist (used by make run)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("checkpoint", help="A .safetensors checkpoint (make_tiny_checkpoint writes one).")

    def handle(self, *args: Any, **options: Any) -> None:
        admin = User.objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if admin is None:
            raise CommandError("no administrator yet: run esd_bootstrap --first-run first")
        path = Path(options["checkpoint"])
        try:
            if not CheckpointFile.objects.filter(name=path.name).exists():
                with path.open("rb") as handle:
                    checkpoint = checkpoint_services.checkpoint_create_from_upload(
                        actor=admin, type="Stable-diffusion", name=path.name,
                        chunks=iter(lambda: handle.read(CHUNK), b""),
                    )  # fmt: skip
                grants.set_visibility(checkpoint, ["*"])
                self.stdout.write(f"Imported {path.name} (a tiny random-weight model: its images are noise).")
            if not Endpoint.objects.exists():
                endpoint = endpoint_services.endpoint_create(
                    actor=admin, suffix="local", endpoint_type="Async", instance_type="cpu", count=1,
                    autoscaling=False, roles=[IT_OPERATOR],
                )  # fmt: skip
                self.stdout.write(f"Created endpoint {endpoint.name} for the {IT_OPERATOR} role.")
        except (Refused, OSError) as exc:
            raise CommandError(str(getattr(exc, "message", exc))) from exc
