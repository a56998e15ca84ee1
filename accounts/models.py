"""People, roles and API tokens."""

import hashlib

from django.contrib.auth.models import AbstractUser, Group
from django.contrib.auth.validators import ASCIIUsernameValidator
from django.db import models
from django.db.models.functions import Lower

from esd.models import TimeStampedModel

from . import esd_permissions

NAME_MAX_LENGTH = 64


class User(AbstractUser):
    """A person (or a client program) using ESD server.

    A user's roles are its Django groups, in the order they were given (ESD keeps `roles` as an ordered list).
    `created_by` is whoever created or last upserted the user: ESD's ownership rules ("only the creator may change
    it unless user:all") read it. A link to the account, never a name: a user re-created under a deleted creator's
    name inherits nothing (its creator reads as empty once the account is gone).
    """

    username_validator = ASCIIUsernameValidator()  # type: ignore[assignment]  # stricter than the base's

    username = models.CharField(
        "username",
        max_length=NAME_MAX_LENGTH,
        unique=True,
        help_text=f"Required. {NAME_MAX_LENGTH} characters or fewer. ASCII letters, digits and @/./+/-/_ only.",
        validators=[username_validator],
        error_messages={"unique": "A user with that username already exists."},
    )
    created_by = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="Who created it."
    )

    class Meta(AbstractUser.Meta):  # type: ignore[name-defined]
        swappable = "AUTH_USER_MODEL"
        ordering = ["username"]
        constraints = [
            # The services refuse a clash with a message naming it; this holds for every other path (the admin).
            models.UniqueConstraint(
                Lower("username"),
                name="accounts_user_username_ci_unique",
                violation_error_message="A user with that username already exists (usernames ignore case).",
            )
        ]

    def __str__(self) -> str:
        return self.username

    @property
    def creator(self) -> str:
        """ESD's `creator`: the creating account's username, empty once that account is deleted."""
        return _username(self.created_by)


def _username(user: "User | None") -> str:
    return user.username if user is not None else ""


class Role(TimeStampedModel):
    """A named set of ESD permission strings, backed by a Django Group whose permissions mirror them.

    The group's name is the role's name; deleting the group deletes the role and every membership. Its creator
    sees it and the checkpoints shared with it (ESD's list rules) and may rewrite or delete it with role:create.
    """

    group = models.OneToOneField(Group, on_delete=models.CASCADE, primary_key=True, related_name="role")
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="Who created it."
    )
    builtin = models.BooleanField(default=False, help_text="Built-in roles cannot be deleted or changed.")

    class Meta:
        ordering = ["group__name"]
        permissions = esd_permissions.meta_permissions()  # type: ignore[assignment]

    def __str__(self) -> str:
        return self.group.name

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def creator(self) -> str:
        """ESD's `creator` (see User.creator)."""
        return _username(self.created_by)


def token_digest(raw: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 (not a slow password hash) is safe and fast to look up."""
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(TimeStampedModel):
    """A bearer token of one user. Only its SHA-256 is stored; the token itself is shown once, when created."""

    PREFIX = "esd_"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=NAME_MAX_LENGTH, blank=True, help_text="What the token is for.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=16, editable=False, help_text="The token's first characters, to recognise it.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.hint}… ({self.user.username}{', ' + self.name if self.name else ''})"
