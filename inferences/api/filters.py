"""`GET /inferences`' filters: the ones the ESD WebUI's job list sends (esd-behaviour.md §9.8), which ESD 1.4.0
ignored and this server applies."""

import django_filters

from esd.filters import moment_filter
from inferences.models import InferenceJob


class InferenceFilter(django_filters.FilterSet):
    status = django_filters.CharFilter(field_name="status")
    task_type = django_filters.CharFilter(field_name="task_type")
    endpoint = django_filters.CharFilter(field_name="endpoint_name")
    checkpoint = django_filters.CharFilter(field_name="used_models", lookup_expr="icontains")
    start_time = moment_filter("start_time", "gte")
    end_time = moment_filter("end_time", "lte")

    class Meta:
        model = InferenceJob
        fields: list[str] = []
