"""Admin helpers every app's admin shares: the person acting, how a service's refusal (esd.errors) shows (on the form,
on the delete page, after an action), and list filters limited to what the viewer may see."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from .errors import Refused

if TYPE_CHECKING:  # the project layer imports no app at run time
    from accounts.models import User


@contextmanager
def refusal_as_form_error() -> Iterator[None]:
    """In a form's clean(): a service's refusal becomes a form error a person sees next to their input."""
    try:
        yield
    except Refused as exc:
        raise forms.ValidationError(exc.message) from exc


def report(model_admin: admin.ModelAdmin, request: HttpRequest, run: Callable[[], int], done: str) -> None:
    """Run a service from an admin action: a refusal becomes an error message, the count a success message
    (`done` is formatted with `count`)."""
    try:
        count = run()
    except Refused as exc:
        model_admin.message_user(request, exc.message, messages.ERROR)
        return
    model_admin.message_user(request, done.format(count=count), messages.SUCCESS)


class VisibleChoicesFilter(admin.SimpleListFilter):
    """A list filter offering only the values found in the rows the viewer may see (the admin's own related-field
    filter lists every user or role in the database, whoever asks). Subclasses name `field` (a foreign key or a
    many-to-many) and `label` (what of the related row is shown)."""

    field: str
    label: str

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        rows = model_admin.get_queryset(request).exclude(**{f"{self.field}__isnull": True})
        pairs = rows.values_list(f"{self.field}__pk", f"{self.field}__{self.label}").distinct()
        return sorted(((str(pk), str(label)) for pk, label in pairs), key=lambda pair: pair[1].lower())

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(**{f"{self.field}__pk": value}).distinct()


def actor_of(request: HttpRequest) -> User:
    """The person using the admin (the admin serves only logged-in staff, never an anonymous user)."""
    user = request.user
    assert user.is_authenticated
    return cast("User", user)


class CheckedDeletionMixin:
    """The admin's delete confirmation page asks the service first: a refusal is listed as what prevents the
    deletion (the page then offers no "Yes"), instead of failing when the person confirms."""

    def delete_check(self, request: HttpRequest, objs: list[Any]) -> None:
        """Refuse (esd.errors) if the person may not delete `objs`."""
        raise NotImplementedError

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)  # type: ignore[misc]
        try:
            self.delete_check(request, list(objs))
        except Refused as exc:
            protected = [*protected, exc.message]
        return deleted, model_count, perms_needed, protected


class ActorFormMixin:
    """Gives the admin's form the logged-in person as `actor`, so its clean() can ask the services whether that
    person may make this change (and show a refusal on the form instead of failing on save)."""

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]
        return type(form.__name__, (form,), {"actor": actor_of(request)})
