"""Admin for checkpoints: list with status and download progress, files inline, upload a file or import a URL,
enable/disable/delete. Writes go through checkpoints.services with the logged-in person as the actor."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from guardian.admin import GuardedModelAdmin

from esd.exceptions import EsdError

from . import services
from .models import Checkpoint, CheckpointFile, CheckpointStatus, CheckpointType


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

    class Meta:
        model = Checkpoint
        fields = ["type"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if bool(data.get("file")) == bool(data.get("url")):
            raise forms.ValidationError("Give either a file or a URL.")
        return data


@admin.register(Checkpoint)
class CheckpointAdmin(GuardedModelAdmin):
    list_display = ("file_names", "type", "status", "progress", "created_by", "created_at")
    list_filter = ("status", "type", "created_at")
    search_fields = ("files__name", "id", "created_by__username", "source_url")
    list_select_related = ("created_by",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    readonly_fields = (
        "id", "type", "status", "error", "progress", "source_url", "created_by", "allowed_roles_or_users", "params",
        "created_at", "updated_at",
    )  # fmt: skip
    inlines = (CheckpointFileInline,)
    actions = ["enable", "disable", "delete_checkpoints"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Checkpoint]:
        return super().get_queryset(request).prefetch_related("files")

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

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        if request.method == "POST":
            form = CheckpointAddForm(request.POST, request.FILES)
            if form.is_valid():
                try:
                    self._create(request, form.cleaned_data)
                except EsdError as exc:
                    form.add_error(None, exc.message)
                else:
                    return HttpResponseRedirect(reverse("admin:checkpoints_checkpoint_changelist"))
            return self._render_add(request, form)
        return super().add_view(request, form_url, extra_context)

    def _render_add(self, request: HttpRequest, form: CheckpointAddForm) -> Any:
        admin_form = admin.helpers.AdminForm(form, self.get_fieldsets(request), {}, model_admin=self)
        context = {
            **self.admin_site.each_context(request),
            "adminform": admin_form,
            "form_url": "",
            "add": True,
            "change": False,
            "has_view_permission": True,
            "has_add_permission": True,
            "has_change_permission": False,
            "has_delete_permission": False,
            "has_editable_inline_admin_formsets": False,
            "opts": self.opts,
            "title": "Add checkpoint",
            "errors": admin.helpers.AdminErrorList(form, []),
            "inline_admin_formsets": [],
            "is_popup": False,
            "save_as": False,
            "show_save": True,
            "has_file_field": True,
            "app_label": self.opts.app_label,
        }
        return self.render_change_form(request, context, add=True, obj=None)

    def _create(self, request: HttpRequest, data: dict[str, Any]) -> None:
        if data.get("file"):
            upload = data["file"]
            checkpoint = services.checkpoint_create_from_upload(
                actor=request.user, type=data["type"], name=upload.name, chunks=upload.chunks()
            )
            self.message_user(request, f"{checkpoint} is Active.", messages.SUCCESS)
        else:
            services.checkpoint_create_from_urls(actor=request.user, type=data["type"], urls=[data["url"]], params={})
            self.message_user(request, "Download started; its progress shows in the list.", messages.SUCCESS)

    def has_change_permission(self, request: HttpRequest, obj: Checkpoint | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)  # read-only page; actions change

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by delete_checkpoints, which removes the files too
        return actions

    def delete_model(self, request: HttpRequest, obj: Checkpoint) -> None:
        services.checkpoint_delete_many(actor=request.user, checkpoints=[obj])

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Checkpoint], status: str) -> None:
        changed = 0
        for checkpoint in queryset:
            try:
                services.checkpoint_update_status(actor=request.user, checkpoint=checkpoint, status=status, tags=None)
                changed += 1
            except EsdError as exc:
                self.message_user(request, f"{checkpoint}: {exc.message}", messages.ERROR)
        if changed:
            self.message_user(request, f"{changed} checkpoint(s) now {status}.", messages.SUCCESS)

    @admin.action(description="Enable (Active)", permissions=["view"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        self._set_status(request, queryset, CheckpointStatus.ACTIVE)

    @admin.action(description="Disable", permissions=["view"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        self._set_status(request, queryset, CheckpointStatus.DISABLED)

    @admin.action(description="Delete selected checkpoints and their files", permissions=["delete"])
    def delete_checkpoints(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        try:
            count = services.checkpoint_delete_many(actor=request.user, checkpoints=list(queryset))
        except EsdError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"Deleted {count} checkpoint(s).", messages.SUCCESS)


__all__ = ["CheckpointAdmin", "CheckpointType"]
