"""Admin helpers: how a service's refusal (esd.errors) shows, on the form or after an action; list filters limited
to what the viewer may see."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from .errors import Refused


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
