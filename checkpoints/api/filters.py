"""`GET /checkpoints`' filters (esd-behaviour.md §7.8)."""

from typing import Any

import django_filters
from django.db.models import QuerySet

from accounts import grants
from checkpoints.models import Checkpoint, CheckpointStatus, CheckpointType
from esd.filters import NameListFilter, choices_filter


class CheckpointFilter(django_filters.FilterSet):
    status = choices_filter("status", "status", list(CheckpointStatus.values))
    types = choices_filter("type", "type", list(CheckpointType.values))
    roles = NameListFilter(method="shares_a_role")

    class Meta:
        model = Checkpoint
        fields: list[str] = []

    def shares_a_role(self, queryset: QuerySet[Any], name: str, value: list[str]) -> QuerySet[Any]:
        """Checkpoints whose visibility list names one of the roles (or users, or `*`)."""
        return queryset.filter(grants.shares_a_name(Checkpoint, value)) if value else queryset
