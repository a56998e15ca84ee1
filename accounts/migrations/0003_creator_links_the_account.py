"""Creators become links to the account (issue 26.8): a bare username let a user re-created under a deleted
creator's name inherit that creator's rights. Existing names are linked to the account that has them now; names
of accounts already deleted link to nothing."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def names_to_links(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    Role = apps.get_model("accounts", "Role")
    ids = dict(User.objects.values_list("username", "pk"))
    for model in (User, Role):
        for row in model.objects.exclude(creator=""):
            row.created_by_id = ids.get(row.creator)
            row.save(update_fields=["created_by"])


def links_to_names(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    Role = apps.get_model("accounts", "Role")
    names = dict(User.objects.values_list("pk", "username"))
    for model in (User, Role):
        for row in model.objects.exclude(created_by=None):
            row.creator = names.get(row.created_by_id, "")
            row.save(update_fields=["creator"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_username_ignores_case"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                help_text="Who created it.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="role",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                help_text="Who created it.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(names_to_links, links_to_names),
        migrations.RemoveField(model_name="user", name="creator"),
        migrations.RemoveField(model_name="role", name="creator"),
    ]
