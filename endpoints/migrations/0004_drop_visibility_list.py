"""The JSON list goes once its grants are written: a migration of its own, since PostgreSQL refuses to alter a
table in the transaction that has just written rows referring to it."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("endpoints", "0003_visibility_grants"),
    ]

    operations = [
        migrations.RemoveField(model_name="endpoint", name="owner_group_or_role"),
    ]
