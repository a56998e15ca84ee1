"""Who an API request acts as: the caller its credentials name, the API key's holder in esd-1.4 mode, or the user a
body field names where ESD 1.4.0 took one (architecture.md §4). DRF request handling, kept out of the services:
they take the acting user as an argument."""

from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from rest_framework import exceptions as drf
from rest_framework.request import Request

from esd.errors import Invalid

from ..access import require
from ..models import User
from ..permissions import bootstrap_admin

Owned = TypeVar("Owned")


def esd_mode() -> bool:
    """esd-1.4 mode: ESD 1.4.0's clients, which send the deployment's API key and name users in bodies."""
    return settings.ESD_AUTH_MODE == "esd-1.4"


def active_user(username: str) -> User | None:
    return User.objects.filter(username=username, is_active=True).first()


def key_alone_accepted() -> bool:
    """Whether the API key alone, with no user, may call the routes ESD 1.4.0's clients call so: only in esd-1.4
    mode and only when a key is set, since without one "the key holder" would be anybody (docs/api.md)."""
    return esd_mode() and bool(settings.ESD_API_KEY)


def key_only(request: Request) -> bool:
    """A request that carries the deployment's API key and no user, where that is accepted (key_alone_accepted).
    The gateway has checked the key before a handler runs."""
    return key_alone_accepted() and not (request.user.is_authenticated or request.auth is not None)


def key_holder_or_caller(request: Request, *, unknown: str) -> User:
    """Who a request acts as on the routes where ESD 1.4.0 took no user at all (DELETE /roles, DELETE
    /checkpoints): with the key alone, the bootstrap administrator; otherwise the caller its credentials name."""
    if not key_only(request):
        return request_caller(request, unknown=unknown)
    admin = bootstrap_admin()
    if admin is None:
        raise Invalid("no administrator exists yet: run `python manage.py esd_bootstrap --first-run` first")
    return admin


def request_caller(request: Request, *, unknown: str) -> User:
    """The user the request's credentials name. An ESD-mode claim of an unknown user is a 400 (`unknown`
    formatted with `name`), as ESD's handlers answered it."""
    user = request.user
    if user.is_authenticated:
        return user
    claimed = getattr(user, "claimed_username", None)
    if claimed is not None:
        raise Invalid(unknown.format(name=claimed))
    raise drf.NotAuthenticated()


def owner_or_caller(
    request: Request, *, find: Callable[[User | None], Owned | None], not_found: Exception, unknown: str
) -> tuple[User, Owned]:
    """Who a request on one object acts as, and the object (`find(viewer)`, None when missing or not visible; a
    viewer of None skips visibility). ESD's clients call an object's routes (a job's, a checkpoint's) with only the
    API key: esd-1.4 mode then acts as the object's creator. Otherwise the caller acts, and must see the object."""
    if key_only(request):
        found = find(None)
        creator = getattr(found, "created_by", None)
        if found is None or creator is None:
            raise not_found
        return creator, found
    caller = request_caller(request, unknown=unknown)
    found = find(caller)
    if found is None:
        raise not_found
    return caller, found


def acting_user(request: Request, *, named: str | None, field: str, unknown: str, required: str | None = None) -> User:
    """The user a request acts as, on routes where ESD 1.4.0 took it from a body field (`creator`, ...).

    esd-1.4 mode trusts the field, as ESD did; a request with neither the field nor credentials is refused with
    `required`, ESD's own message for it. Token mode acts as the token's owner: the field must name the caller,
    unless the caller holds `user:all` and so may act for anyone (architecture.md §4).
    """
    if required is not None and esd_mode() and not named and not request.user.is_authenticated:
        raise Invalid(required)
    if esd_mode() and named:
        user = active_user(named)
        if user is None:
            raise Invalid(unknown.format(name=named))
        return user
    caller = request_caller(request, unknown=unknown)
    if not named or named == caller.username:
        return caller
    require(caller, "user.act_for_another", field=field, named=named)
    user = active_user(named)
    if user is None:
        raise Invalid(unknown.format(name=named))
    return user


def list_subject(request: Request, viewer: User, *, unknown: str) -> User:
    """Whose view a list route computes (its `username` query parameter, ESD-style): the caller by default; another
    user only in esd-1.4 mode (as ESD did) or for a caller holding user:all."""
    name = request.query_params.get("username")
    if not name or name == viewer.username:
        return viewer
    if not esd_mode():
        require(viewer, "user.list_as_another", named=name)
    subject = active_user(name)
    if subject is None:
        raise Invalid(unknown.format(name=name))
    return subject
