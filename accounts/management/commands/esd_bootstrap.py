"""Idempotent set-up: the built-in roles and, if asked, an IT Operator administrator who can use the admin."""

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import services
from accounts.models import User
from accounts.permissions import bootstrap_admin
from esd.storage import S3Storage, get_storage


class Command(BaseCommand):
    help = (
        "Create the built-in roles. With --username/--password, create or update an IT Operator administrator. "
        "With --first-run, create an administrator `admin` with a random password only while no user exists, "
        "and print the password and an API token once."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", help="Administrator to create or update.")
        parser.add_argument("--password", help="Its password (required with --username).")
        parser.add_argument(
            "--first-run",
            action="store_true",
            help="Create `admin` with a random password and an API token if there is no user yet; print them once.",
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        services.roles_ensure_builtin()
        self.stdout.write("Built-in roles are in place.")
        storage = get_storage()
        if isinstance(storage, S3Storage):
            storage.ensure_bucket()
            self.stdout.write(f"Bucket {storage.bucket} is in place.")
        username, password = options["username"], options["password"]
        if username:
            if not password:
                raise CommandError("--password is required with --username")
            user = services.admin_ensure(username=username, password=password)
            self.stdout.write(f"Administrator {user.username} can log into the admin.")
        if options["first_run"] and User.objects.exists():
            admin = bootstrap_admin()
            name = admin.username if admin is not None else "USERNAME"
            self.stdout.write(
                f"An administrator already exists ({name}): its password and first API token were printed by the "
                "first run only.\n"
                f"  a new API token:  python manage.py create_api_token {name}\n"
                f"  a new password:   python manage.py changepassword {name}"
            )
        if options["first_run"] and not User.objects.exists():
            password = secrets.token_urlsafe(12)
            user = services.admin_ensure(username="admin", password=password)
            _, token = services.api_token_create(user=user, name="first run")
            self.stdout.write(
                self.style.SUCCESS(
                    "\nFirst run: an administrator was created. These are shown only now; keep them.\n"
                    f"  admin login:  {user.username} / {password}\n"
                    f"  API token:    {token}\n"
                )
            )
