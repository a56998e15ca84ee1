"""The JSON list goes once its grants are written: a migration of its own, since PostgreSQL refuses to alter a
table in the transaction that has just written rows referring to it."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("checkpoints", "0004_visibility_grants"),
    ]

    operations = [
        migrations.RemoveField(model_name="checkpoint", name="allowed_roles_or_users"),
    ]
