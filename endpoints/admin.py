"""Admin for endpoints: status, live workers (host, device, heartbeat, current job), backlog and the instance count
it calls for; create one; delete (drain) with the same rules as the API."""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest
from guardian.admin import GuardedModelAdmin

from esd.admin_helpers import ActorFormMixin, CheckedDeletionMixin, actor_of, refusal_as_form_error, report

from . import selectors, services
from .autoscaling import scaling
from .models import Endpoint, Worker
from .selectors import with_live_counts


class WorkerInline(admin.TabularInline):
    model = Worker
    extra = 0
    fields = ("hostname", "pid", "device", "started_at", "last_heartbeat", "current_job", "stopped_at", "alive")
    readonly_fields = fields
    can_delete = False
    ordering = ("-last_heartbeat",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(boolean=True)
    def alive(self, worker: Worker) -> bool:
        return worker.stopped_at is None and worker.last_heartbeat >= selectors.live_cutoff()


class EndpointAddForm(forms.ModelForm):
    suffix = forms.RegexField(
        regex=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$", max_length=20, required=False,
        help_text="The name becomes esd-async-SUFFIX or esd-real-time-SUFFIX.",
    )  # fmt: skip
    roles = forms.ModelMultipleChoiceField(
        queryset=Group.objects.filter(role__isnull=False).order_by("name"),
        to_field_name="name",
        help_text="The roles whose users' jobs run here (one endpoint per role).",
    )

    actor: Any

    class Meta:
        model = Endpoint
        fields = ["endpoint_type", "instance_type", "initial_instance_count", "autoscaling"]
        help_texts = {
            "instance_type": "An ESD name such as ml.g5.2xlarge, or a label of ESD_INSTANCE_TYPES (cpu, cuda, gpu).",
            "autoscaling": "Async only: scale between 0 and the instance count on the backlog (see /metrics).",
        }

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if not self.errors:
            with refusal_as_form_error():
                services.endpoint_create_check(actor=self.actor, **self.service_arguments())
        return data

    def service_arguments(self) -> dict[str, Any]:
        """The form's values as endpoint_create(_check) takes them."""
        data = self.cleaned_data
        return {
            "suffix": data.get("suffix") or None,
            "endpoint_type": data["endpoint_type"],
            "instance_type": data["instance_type"],
            "count": data["initial_instance_count"],
            "autoscaling": data["autoscaling"],
            "roles": [group.name for group in data.get("roles", [])],
        }


@admin.register(Endpoint)
class EndpointAdmin(CheckedDeletionMixin, ActorFormMixin, GuardedModelAdmin):  # type: ignore[misc]
    list_display = ("name", "endpoint_type", "status", "instances", "backlog", "instance_type")
    list_filter = ("status", "endpoint_type", "instance_type")
    search_fields = ("name", "instance_type")
    ordering = ("name",)
    readonly_fields = (
        "id", "name", "endpoint_type", "status", "error", "instance_type", "autoscaling", "initial_instance_count",
        "owner_group_or_role", "created_by", "created_at", "end_time", "live_workers", "backlog", "desired_instances",
        "last_probe_at", "last_probe_worker",
    )  # fmt: skip
    inlines = (WorkerInline,)
    actions = ["probe", "delete_endpoints"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Endpoint]:
        return with_live_counts(selectors.visible_endpoints(actor_of(request), super().get_queryset(request)))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = EndpointAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [(None, {"fields": ("suffix", "endpoint_type", "instance_type", "initial_instance_count",
                                       "autoscaling", "roles")})]  # fmt: skip
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else ()

    def has_change_permission(self, request: HttpRequest, obj: Endpoint | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="live workers")
    def live_workers(self, endpoint: Endpoint) -> int:
        return getattr(endpoint, "live", 0)

    def _scaling(self, endpoint: Endpoint) -> Any:
        # Asked of the broker once per row, however many columns show it.
        if not hasattr(endpoint, "_scaling"):
            endpoint._scaling = scaling(endpoint, getattr(endpoint, "live", 0), getattr(endpoint, "busy", 0))  # type: ignore[attr-defined]
        return endpoint._scaling  # type: ignore[attr-defined]

    @admin.display(description="instances (live / desired)")
    def instances(self, endpoint: Endpoint) -> str:
        return f"{getattr(endpoint, 'live', 0)} / {self._scaling(endpoint).desired}"

    @admin.display(description="backlog (queued + running jobs)")
    def backlog(self, endpoint: Endpoint) -> int:
        return self._scaling(endpoint).backlog

    @admin.display(description="desired instances")
    def desired_instances(self, endpoint: Endpoint) -> str:
        return f"{self._scaling(endpoint).desired} of {endpoint.min_instance_count}..{endpoint.initial_instance_count}"

    def save_model(self, request: HttpRequest, obj: Endpoint, form: Any, change: bool) -> None:
        endpoint = services.endpoint_create(actor=actor_of(request), **form.service_arguments())
        obj.pk, obj.name, obj.created_at = endpoint.pk, endpoint.name, endpoint.created_at
        obj._state.adding = False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by delete_endpoints: workers drain first
        return actions

    def delete_check(self, request: HttpRequest, objs: list[Any]) -> None:
        services.endpoint_delete_check(actor=actor_of(request), endpoints=objs)

    def delete_model(self, request: HttpRequest, obj: Endpoint) -> None:
        services.endpoint_delete_many(actor=actor_of(request), endpoints=[obj])

    @admin.action(description="Probe: check that a worker answers through the queue", permissions=["view"])
    def probe(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        for endpoint in queryset:
            services.endpoint_probe_send(endpoint=endpoint)
        self.message_user(request, "Probe sent; the answering worker and time show on the endpoint's page.")

    @admin.action(description="Delete selected endpoints (workers finish their job, then exit)", permissions=["delete"])
    def delete_endpoints(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        chosen = list(queryset)
        report(
            self, request, lambda: services.endpoint_delete_many(actor=actor_of(request), endpoints=chosen),
            "{count} endpoint(s) deleted or draining.",
        )  # fmt: skip
