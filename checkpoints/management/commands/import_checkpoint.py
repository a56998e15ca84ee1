"""Import a model file from a local path or a URL, as a user would upload it (checked, then Active)."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from checkpoints import execution, services
from checkpoints.models import Checkpoint, CheckpointFile, CheckpointType
from esd.errors import Refused
from esd.storage import CHUNK


class Command(BaseCommand):
    help = "Import PATH_OR_URL as a checkpoint of --type, owned by --user (default: the first superuser)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("source", metavar="PATH_OR_URL")
        parser.add_argument("--type", required=True, choices=CheckpointType.values)
        parser.add_argument("--user", help="Owner (needs checkpoint:create).")
        parser.add_argument(
            "--skip-existing", action="store_true", help="Do nothing when a checkpoint of that file name exists."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        users = User.objects.filter(is_active=True)
        user = (
            users.filter(username=options["user"]).first()
            if options["user"]
            else users.filter(is_superuser=True).order_by("pk").first()
        )
        if user is None:
            raise CommandError("no such active user (run esd_bootstrap first, or pass --user)")
        source: str = options["source"]
        if options["skip_existing"] and not source.startswith(("http://", "https://")):
            existing = CheckpointFile.objects.filter(name=Path(source).name).select_related("checkpoint").first()
            if existing is not None:
                self.stdout.write(f"{existing.checkpoint.pk} {existing.name} already imported")
                return
        try:
            if source.startswith(("http://", "https://")):
                [checkpoint] = services.checkpoint_create_from_urls(
                    actor=user, type=options["type"], urls=[source], params={}
                )
                # Run the download here rather than waiting for a worker.
                execution.checkpoint_download_run(checkpoint_id=str(checkpoint.pk))
            else:
                path = Path(source)
                if not path.is_file():
                    raise CommandError(f"{source} is not a file")
                with path.open("rb") as handle:
                    checkpoint = services.checkpoint_create_from_upload(
                        actor=user, type=options["type"], name=path.name, chunks=iter(lambda: handle.read(CHUNK), b"")
                    )
        except Refused as exc:
            raise CommandError(exc.message) from exc
        checkpoint = Checkpoint.objects.get(pk=checkpoint.pk)
        if checkpoint.status != "Active":
            raise CommandError(f"import failed: {checkpoint.error}")
        self.stdout.write(f"{checkpoint.pk} {', '.join(checkpoint.names)} Active")
