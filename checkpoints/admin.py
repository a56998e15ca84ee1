"""Admin for checkpoints: list with status and download progress, files inline, upload a file or import a URL,
enable/disable/delete. Writes go through checkpoints.services with the logged-in person as the actor."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from guardian.admin import GuardedModelAdmin

from esd.admin_helpers import ActorFormMixin, CheckedDeletionMixin, actor_of, refusal_as_form_error, report
from esd.errors import Refused
from esd.storage import get_storage

from . import selectors, services
from .models import Checkpoint, CheckpointFile, CheckpointStatus


class CheckpointFileInline(admin.TabularInline):
    model = CheckpointFile
    extra = 0
    fields = ("name", "format", "size", "sha256")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CheckpointAddForm(forms.ModelForm):
    """Add a checkpoint: a .safetensors/.yaml file (or a tar of them) uploaded here, or a URL to download."""

    file = forms.FileField(required=False, help_text="A .safetensors or .yaml file, or a tar archive of them.")
    url = forms.URLField(
        required=False, max_length=2048, assume_scheme="https", help_text="Or an http(s) URL to download."
    )

    actor: Any
    created: Checkpoint | None = None

    class Meta:
        model = Checkpoint
        fields = ["type"]

    def clean(self) -> dict[str, Any]:
        """Create the checkpoint here, through the service, so that a refused file is shown on the form."""
        super().clean()
        data = self.cleaned_data
        if bool(data.get("file")) == bool(data.get("url")):
            raise forms.ValidationError("Give either a file or a URL.")
        if self.errors:
            return data
        with refusal_as_form_error():
            if data.get("file"):
                upload = data["file"]
                self.created = services.checkpoint_create_from_upload(
                    actor=self.actor, type=data["type"], name=upload.name, chunks=upload.chunks(), size=upload.size
                )
            else:
                [self.created] = services.checkpoint_create_from_urls(
                    actor=self.actor, type=data["type"], urls=[data["url"]], params={}
                )
        return data


@admin.register(Checkpoint)
class CheckpointAdmin(CheckedDeletionMixin, ActorFormMixin, GuardedModelAdmin):  # type: ignore[misc]
    list_display = ("file_names", "type", "status", "progress", "created_by", "created_at")
    list_filter = ("status", "type", "created_at")
    search_fields = ("files__name", "id", "created_by__username", "source_url")
    list_select_related = ("created_by",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    readonly_fields = (
        "id", "type", "status", "error", "progress", "stored_at", "source_url", "created_by", "everyone",
        "allowed_roles_or_users", "params", "created_at", "updated_at",
    )  # fmt: skip
    inlines = (CheckpointFileInline,)
    actions = ["enable", "disable", "open_to_everyone", "limit_to_grants", "delete_checkpoints"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Checkpoint]:
        return super().get_queryset(request).filter(selectors.visible_to(actor_of(request))).prefetch_related("files")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = CheckpointAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [(None, {"fields": ("type", "file", "url")})]
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else ()

    @admin.display(description="files")
    def file_names(self, checkpoint: Checkpoint) -> str:
        return ", ".join(checkpoint.names) or "-"

    @admin.display(description="stored at")
    def stored_at(self, checkpoint: Checkpoint) -> str:
        return get_storage().location(checkpoint.folder)  # the store's own form: a path on the local store

    @admin.display(description="progress")
    def progress(self, checkpoint: Checkpoint) -> str:
        if checkpoint.status == CheckpointStatus.FAILED:
            return format_html('<span title="{}">failed: {}</span>', checkpoint.error, checkpoint.error[:80])
        if checkpoint.status != CheckpointStatus.DOWNLOADING:
            return "-"
        if checkpoint.bytes_total:
            percent = 100 * checkpoint.bytes_done // checkpoint.bytes_total
            return format_html('<progress max="100" value="{}"></progress> {}%', percent, percent)
        return f"{checkpoint.bytes_done} bytes"

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> Any:
        # The admin wraps a POST in one transaction, which on SQLite holds the only write lock until it ends; adding
        # a checkpoint stores a file of up to tens of gigabytes first, so the add page runs without it (the
        # service writes the row in a short transaction of its own, after the file is stored and checked).
        if object_id is None and request.method == "POST":
            return self._changeform_view(request, object_id, form_url, extra_context)  # type: ignore[attr-defined]
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Checkpoint, form: Any, change: bool) -> None:
        created = form.created  # made by the form's clean(), through the service
        obj.pk, obj.status, obj.created_at = created.pk, created.status, created.created_at
        obj._state.adding = False
        if created.status == CheckpointStatus.DOWNLOADING:
            self.message_user(request, "Download started; its progress shows in the list.", messages.SUCCESS)

    def has_change_permission(self, request: HttpRequest, obj: Checkpoint | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)  # read-only page; actions change

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by delete_checkpoints, which removes the files too
        return actions

    def delete_check(self, request: HttpRequest, objs: list[Any]) -> None:
        services.checkpoint_delete_check(actor=actor_of(request), checkpoints=objs)

    def delete_model(self, request: HttpRequest, obj: Checkpoint) -> None:
        services.checkpoint_delete_many(actor=actor_of(request), checkpoints=[obj])

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Checkpoint], status: str) -> None:
        changed = 0
        for checkpoint in queryset:
            try:
                services.checkpoint_update_status(
                    actor=actor_of(request), checkpoint=checkpoint, status=status, tags=None
                )
                changed += 1
            except Refused as exc:
                self.message_user(request, f"{checkpoint}: {exc.message}", messages.ERROR)
        if changed:
            self.message_user(request, f"{changed} checkpoint(s) now {status}.", messages.SUCCESS)

    @admin.action(description="Enable (Active)", permissions=["view"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        self._set_status(request, queryset, CheckpointStatus.ACTIVE)

    @admin.action(description="Disable", permissions=["view"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        self._set_status(request, queryset, CheckpointStatus.DISABLED)

    def _set_everyone(self, request: HttpRequest, queryset: QuerySet[Checkpoint], everyone: bool) -> None:
        chosen = list(queryset)
        done = "visible to everyone" if everyone else "visible to the roles and users of their Object permissions"
        report(
            self, request,
            lambda: services.checkpoint_set_everyone(actor=actor_of(request), checkpoints=chosen, everyone=everyone),
            f"{{count}} checkpoint(s) now {done}.",
        )  # fmt: skip

    @admin.action(description="Make visible to everyone", permissions=["view"])
    def open_to_everyone(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        self._set_everyone(request, queryset, True)

    @admin.action(description="Limit to its Object permissions", permissions=["view"])
    def limit_to_grants(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        self._set_everyone(request, queryset, False)

    @admin.action(description="Delete selected checkpoints and their files", permissions=["delete"])
    def delete_checkpoints(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        chosen = list(queryset)
        report(
            self, request, lambda: services.checkpoint_delete_many(actor=actor_of(request), checkpoints=chosen),
            "Deleted {count} checkpoint(s).",
        )  # fmt: skip
