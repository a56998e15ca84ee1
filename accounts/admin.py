"""Admin for users, roles and API tokens. Every write goes through accounts.services, with the logged-in person
as the actor, so the admin enforces the same rules as the API (a refusal is shown on the form)."""

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django_dramatiq.models import Task as DramatiqTask

from esd.admin_helpers import (
    ActorFormMixin,
    CheckedDeletionMixin,
    VisibleChoicesFilter,
    actor_of,
    refusal_as_form_error,
    report,
)
from esd.errors import Refused

from . import esd_permissions, selectors, services
from .api.schemas import ROLE_NAME
from .models import ApiToken, Role, User

admin.site.unregister(Group)  # roles replace bare groups
# django_dramatiq's task table is filled only by a middleware ESD does not use: the jobs' own rows are the record.
admin.site.unregister(DramatiqTask)


# --- Roles ---------------------------------------------------------------------------------------------------


class RoleForm(forms.ModelForm):
    name = forms.CharField(max_length=64, help_text="Letters, digits, spaces and @/./+/-/_ .")
    permissions = forms.MultipleChoiceField(
        choices=[(permission, permission) for permission in esd_permissions.PERMISSIONS],
        widget=forms.CheckboxSelectMultiple,
        help_text="`all` also grants `create` and `list`.",
    )
    actor: User

    class Meta:
        model = Role
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["name"].initial = self.instance.name
            self.fields["name"].disabled = True
            self.fields["permissions"].initial = selectors.role_permission_strings(self.instance)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        name = data.get("name") or ""
        if name and not re.match(ROLE_NAME["pattern"], name):
            self.add_error("name", "Use ASCII letters, digits, single spaces and @/./+/-/_ only.")
        if name and data.get("permissions") and not self.errors:
            with refusal_as_form_error():
                services.role_upsert_check(actor=self.actor, name=name, permissions=data["permissions"])
        return data


@admin.register(Role)
class RoleAdmin(CheckedDeletionMixin, ActorFormMixin, admin.ModelAdmin):
    form = RoleForm
    list_display = ("name", "permission_list", "creator", "builtin", "member_count")
    list_filter = ("builtin",)
    search_fields = ("group__name", "created_by__username")
    ordering = ("group__name",)
    readonly_fields = ("creator", "builtin", "created_at", "updated_at")
    actions = ["delete_roles"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Role]:
        return selectors.visible_roles(actor_of(request), selectors.roles_with_permissions())

    @admin.display(description="permissions")
    def permission_list(self, role: Role) -> str:
        return ", ".join(selectors.role_permission_strings(role))

    @admin.display(description="members")
    def member_count(self, role: Role) -> int:
        return role.group.user_set.count()

    def get_fields(self, request: HttpRequest, obj: Role | None = None) -> Any:
        fields = ["name", "permissions"]
        return fields if obj is None else [*fields, *self.readonly_fields]

    def has_change_permission(self, request: HttpRequest, obj: Role | None = None) -> bool:
        return not (obj and obj.builtin) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Role | None = None) -> bool:
        return not (obj and obj.builtin) and super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by delete_roles, which goes through the service
        return actions

    def save_model(self, request: HttpRequest, obj: Role, form: RoleForm, change: bool) -> None:
        role = services.role_upsert(
            actor=actor_of(request), name=form.cleaned_data["name"], permissions=form.cleaned_data["permissions"]
        )
        obj.group, obj.created_by, obj.builtin = role.group, role.created_by, role.builtin
        obj._state.adding = False

    def delete_check(self, request: HttpRequest, objs: list[Any]) -> None:
        services.role_delete_check(actor=actor_of(request), roles=objs)

    def delete_model(self, request: HttpRequest, obj: Role) -> None:
        services.role_delete_many(actor=actor_of(request), names=[obj.name])

    @admin.action(description="Delete selected roles", permissions=["delete"])
    def delete_roles(self, request: HttpRequest, queryset: QuerySet[Role]) -> None:
        names = [role.name for role in queryset]
        report(
            self,
            request,
            lambda: services.role_delete_many(actor=actor_of(request), names=names),
            "Deleted {count} role(s).",
        )


# --- Users ---------------------------------------------------------------------------------------------------


class RolesField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Role) -> str:
        return obj.name


class UserRolesFormMixin(forms.Form):
    roles = RolesField(
        queryset=Role.objects.select_related("group").order_by("group__name"),
        required=False,
        widget=FilteredSelectMultiple("roles", is_stacked=False),
        help_text="The user's permissions are the union of its roles' permission strings.",
    )
    actor: User

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instance = getattr(self, "instance", None)
        if instance is not None and instance.pk:
            names = selectors.user_role_names([instance]).get(instance.pk, [])
            self.fields["roles"].initial = list(Role.objects.filter(group__name__in=names))

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        instance = getattr(self, "instance", None)
        if data.get("username") and (instance is None or instance.pk is None):
            with refusal_as_form_error():
                services.user_name_free_check(data["username"])
        if "roles" in data:
            with refusal_as_form_error():
                services.user_roles_check(actor=self.actor, user=instance, roles=list(data["roles"]))
        return data


class ApiTokenInline(admin.TabularInline):
    model = ApiToken
    extra = 0
    fields = ("hint", "name", "created_at", "last_used_at")
    readonly_fields = fields
    can_delete = True
    verbose_name_plural = "API tokens (delete one to revoke it; create one with the action on the user list)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class UserChangeWithRolesForm(UserRolesFormMixin, DjangoUserAdmin.form):  # type: ignore[misc,name-defined,valid-type]
    pass


class UserCreationWithRolesForm(UserRolesFormMixin, DjangoUserAdmin.add_form):  # type: ignore[misc,name-defined,valid-type]
    pass


class RoleFilter(VisibleChoicesFilter):
    title = "role"
    parameter_name = "role"
    field, label = "groups", "name"


@admin.register(User)
class UserAdmin(CheckedDeletionMixin, ActorFormMixin, DjangoUserAdmin):
    form = UserChangeWithRolesForm
    add_form = UserCreationWithRolesForm
    list_display = ("username", "role_list", "creator", "is_active", "is_staff", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser", RoleFilter)
    search_fields = ("username", "email", "created_by__username")
    ordering = ("username",)
    readonly_fields = ("creator", "last_login", "date_joined")
    inlines = (ApiTokenInline,)
    actions = ["create_api_token", "delete_users"]
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Roles", {"fields": ("roles",)}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Admin access", {"fields": ("is_active", "is_staff", "is_superuser")}),
        ("History", {"fields": ("creator", "last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("username", "password1", "password2", "roles")}),)

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return selectors.visible_users(actor_of(request), super().get_queryset(request))

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else ()  # a new user has no tokens yet

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_readonly_fields(request, obj)
        if actor_of(request).is_superuser:
            return fields
        # Admin access and superuser status are for a superuser to give (the API has no way to give them at all).
        return (*fields, "is_staff", "is_superuser")

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        # Only a superuser changes a superuser (the API's rule); the page stays viewable, read-only.
        if obj is not None and obj.is_superuser and not actor_of(request).is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if obj is not None and obj.is_superuser and not actor_of(request).is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> Any:
        # A new password is the user's identity: setting it is acting as them (the same rule as minting a token).
        target = self.get_object(request, unquote(id))
        if target is not None:
            try:
                services.user_act_as_check(actor=actor_of(request), target=target)
            except Refused as exc:
                raise PermissionDenied(exc.message) from exc
        return super().user_change_password(request, id, form_url)

    @admin.display(description="roles")
    def role_list(self, user: User) -> str:
        return ", ".join(selectors.user_role_names([user]).get(user.pk, []))

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by delete_users, which goes through the service
        return actions

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = actor_of(request)
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        services.user_set_roles(user=form.instance, roles=list(form.cleaned_data.get("roles", [])))

    def delete_check(self, request: HttpRequest, objs: list[Any]) -> None:
        services.user_delete_check(actor=actor_of(request), targets=objs)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        services.user_delete_many(actor=actor_of(request), usernames=[obj.username])

    @admin.action(description="Delete selected users", permissions=["delete"])
    def delete_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        names = [user.username for user in queryset]
        report(
            self,
            request,
            lambda: services.user_delete_many(actor=actor_of(request), usernames=names),
            "Deleted {count} user(s).",
        )

    @admin.action(description="Create an API token (shown once)", permissions=["change"])
    def create_api_token(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            try:
                _, token = services.api_token_create(
                    user=user, name=f"admin ({request.user.username})", actor=actor_of(request)
                )
            except Refused as exc:
                self.message_user(request, f"No token for {user.username}: {exc.message}", messages.ERROR)
                continue
            self.message_user(
                request,
                f"New API token for {user.username} (copy it now, it is not shown again): {token}",
                messages.SUCCESS,
            )


class ApiTokenForm(forms.ModelForm):
    actor: User

    class Meta:
        model = ApiToken
        fields = ("user", "name")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("user") is not None:
            with refusal_as_form_error():
                services.user_act_as_check(actor=self.actor, target=data["user"])
        return data


@admin.register(ApiToken)
class ApiTokenAdmin(ActorFormMixin, admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ("hint", "user", "name", "created_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "name", "hint")
    list_filter = ("created_at",)
    ordering = ("-created_at",)
    fields = ("user", "name", "hint", "created_at", "last_used_at")
    readonly_fields = ("hint", "created_at", "last_used_at")
    autocomplete_fields = ("user",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        users = selectors.visible_users(actor_of(request), User.objects.all())
        return super().get_queryset(request).filter(user__in=users)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":
            kwargs["queryset"] = selectors.visible_users(actor_of(request), User.objects.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        token, raw = services.api_token_create(user=obj.user, name=obj.name, actor=actor_of(request))
        obj.pk, obj.digest, obj.hint, obj.created_at = token.pk, token.digest, token.hint, token.created_at
        obj._state.adding = False
        self.message_user(request, f"New API token for {obj.user.username} (copy it now, it is not shown again): {raw}")

    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        services.api_token_revoke(token=obj)
