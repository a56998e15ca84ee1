"""`python manage.py esd_copy_store FOLDER`: copy a local store's objects into the store this deployment is
configured with (ESD_STORAGE=s3 ...), the step that moves `make run`'s data to S3 (docs/deployment.md).

Every file under FOLDER becomes the object of the same key; unfinished uploads (`.multipart/`) and files being
written (`.incoming-*`) are left out. An object already in the target with the same size is skipped, so a run that
was interrupted can simply be run again. Streams each file: memory stays small whatever their size.
"""

from functools import partial
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from esd.storage import StorageError, get_storage, human_bytes

CHUNK = 8 * 1024 * 1024


def local_objects(root: Path) -> list[tuple[str, Path]]:
    """(key, path) of every object a local store keeps under `root`, in key order."""
    found = []
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_file() and not key.startswith(".multipart/") and not path.name.startswith(".incoming-"):
            found.append((key, path))
    return found


class Command(BaseCommand):
    help = "Copy every object of a local store folder into the configured store (skipping those already there)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", help="The local store's folder (make run's: var/storage).")

    def handle(self, *args: Any, **options: Any) -> None:
        root = Path(options["folder"]).resolve()
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder")
        storage = get_storage()
        copied = skipped = size = 0
        try:
            for key, path in local_objects(root):
                length = path.stat().st_size
                if storage.size(key) == length:
                    skipped += 1
                    continue
                with path.open("rb") as handle:
                    storage.write_stream(key, iter(partial(handle.read, CHUNK), b""))
                copied, size = copied + 1, size + length
        except StorageError as exc:
            raise CommandError(f"stopped after {copied} object(s): {exc}; run the command again to go on") from exc
        self.stdout.write(
            f"Copied {copied} object(s) ({human_bytes(size)}) to {storage.uri('')}; {skipped} were there already."
        )
