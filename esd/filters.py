"""Query-string filters of the list routes, as django-filter FilterSets, with ESD's 400 for a bad value."""

from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django.http import QueryDict

from .exceptions import EsdError


class NameListField(forms.Field):
    """Every value of a repeated parameter (`roles=a&roles=b`), as names; nothing to validate."""

    widget = forms.MultipleHiddenInput  # reads the parameter with QueryDict.getlist

    def to_python(self, value: Any) -> list[str]:
        return [str(item) for item in value or [] if item]


class NameListFilter(django_filters.Filter):
    field_class = NameListField


def choices_filter(field_name: str, label: str, values: list[str]) -> django_filters.MultipleChoiceFilter:
    """A repeatable parameter whose values must be among `values`; a wrong one is refused naming the right ones."""
    return django_filters.MultipleChoiceFilter(
        field_name=field_name,
        choices=[(value, value) for value in values],
        error_messages={"invalid_choice": f"unknown {label} '%(value)s': use one of {', '.join(values)}"},
    )


def moment_filter(name: str, lookup: str) -> django_filters.IsoDateTimeFilter:
    return django_filters.IsoDateTimeFilter(
        field_name="created_at",
        lookup_expr=lookup,
        error_messages={"invalid": f"{name} must be an ISO 8601 date and time"},
    )


def filtered(filterset: type[django_filters.FilterSet], params: QueryDict, queryset: QuerySet[Any]) -> QuerySet[Any]:
    """`queryset` narrowed by the FilterSet's parameters from `params` (one SQL query); 400 naming the first bad
    one."""
    bound = filterset(params, queryset=queryset)
    if not bound.is_valid():
        errors = next(iter(bound.errors.values()))
        raise EsdError(400, str(errors[0]))
    return bound.qs
