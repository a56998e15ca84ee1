"""Print a new API token for a user, and nothing else (so scripts can capture it)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.models import User


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print only the token."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for (shown in the admin).")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["username"], is_active=True).first()
        if user is None:
            raise CommandError(f"no active user named {options['username']!r}")
        _, token = services.api_token_create(user=user, name=options["name"])
        self.stdout.write(token)
