"""How the admin shows a service's refusal (esd.errors): on the form, or as a message after an action."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
