"""Who is calling, per ESD_AUTH_MODE (architecture.md §4).

- `token`: `Authorization: Bearer <API token>`; the token's owner is the caller.
- `esd-1.4`: ESD 1.4.0's scheme: a `username` header, else `Authorization: Bearer <hex of the username>`.
  Nothing is signed: the deployment's API key is the only secret, and every key holder is trusted.
  A claim naming an unknown user still authenticates (as ESD did) so the route can answer its own 400.
- Django sessions (the admin, a logged-in browser) work in both modes.

Each class also tells EsdAPIView whether credentials were `presented` at all: with none, a route that needs a
caller answers 401 before the API key is checked, as ESD's gateway did.
"""

import binascii
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .models import ApiToken, User, token_digest

# last_used_at is informative; writing it on every request would make every read a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _bearer(request: Request) -> str:
    header = request.headers.get("Authorization", "").strip()
    if header.lower() == "bearer":
        return ""  # the scheme with no token: nothing was sent
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return header


class InvalidToken(exceptions.AuthenticationFailed):
    """A bearer token was sent but names no active user's token: told apart from sending none (both 401)."""

    default_detail = (
        "Unauthorized: the API token is invalid or revoked (or its user is deactivated); create a new one in the "
        "admin, with `python manage.py create_api_token USERNAME`, or with POST auth/token"
    )


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>` in token mode."""

    def presented(self, request: Request) -> bool:
        return settings.ESD_AUTH_MODE == "token" and bool(_bearer(request))

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        if not self.presented(request):
            return None
        token = ApiToken.objects.select_related("user").filter(digest=token_digest(_bearer(request))).first()
        if token is None or not token.user.is_active:
            raise InvalidToken()
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


@dataclass(frozen=True)
class EsdClaim:
    """The username an ESD-mode request claims to act as."""

    username: str


class UnknownCaller(AnonymousUser):
    """An ESD-mode claim of a username that no active user has."""

    def __init__(self, username: str) -> None:
        super().__init__()
        self.claimed_username = username


def decode_esd_bearer(value: str) -> str:
    """ESD 1.4.0's bearer: base16 of the username's UTF-8 bytes (lower-case accepted, unlike ESD)."""
    value = value.replace("Bearer ", "").strip()
    try:
        return binascii.unhexlify(value).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise exceptions.AuthenticationFailed() from exc


class EsdHeaderAuthentication(authentication.BaseAuthentication):
    """`username` header, else the hex-username bearer, in esd-1.4 mode."""

    def presented(self, request: Request) -> bool:
        return settings.ESD_AUTH_MODE == "esd-1.4" and bool(
            request.headers.get("username", "").strip() or _bearer(request)
        )

    def authenticate(self, request: Request) -> tuple[Any, EsdClaim] | None:
        if not self.presented(request):
            return None
        username = request.headers.get("username", "").strip() or decode_esd_bearer(_bearer(request))
        if not username:
            raise exceptions.AuthenticationFailed()
        user = User.objects.filter(username=username, is_active=True).first()
        return (user or UnknownCaller(username)), EsdClaim(username)

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class EsdSessionAuthentication(authentication.SessionAuthentication):
    """Django's session (with its CSRF check), for the admin and logged-in browsers."""

    def enforce_csrf(self, request: Request) -> None:
        # DRF hands Django's CSRF check its own Request, whose `POST` goes through the view's parsers; ESD views
        # have none (parse_json_body reads bodies), so a valid token met a 415. Django's request reads POST itself.
        super().enforce_csrf(request._request)  # type: ignore[arg-type]  # DRF's check takes Django's request too

    def presented(self, request: Request) -> bool:
        user = getattr(request._request, "user", None)
        return bool(user and user.is_active and user.is_authenticated)
