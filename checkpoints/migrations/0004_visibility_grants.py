"""ESD's JSON visibility list becomes guardian grants, the one record of who sees the checkpoint
(accounts/grants.py); the list is now read from them."""

from django.db import migrations, models

from accounts.visibility_migration import grants_to_lists, lists_to_grants


class Migration(migrations.Migration):

    dependencies = [
        ("checkpoints", "0003_upscaler_type"),
        ("accounts", "0002_username_ignores_case"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AddField(
            model_name="checkpoint",
            name="everyone",
            field=models.BooleanField(
                default=False,
                help_text="Every user may see and use it (ESD's `*` in allowed_roles_or_users). Otherwise the roles "
                "and users given the view permission on its Object permissions page may.",
                verbose_name="visible to everyone",
            ),
        ),
        migrations.RunPython(
            lists_to_grants("checkpoints", "Checkpoint", "allowed_roles_or_users", everyone=True),
            grants_to_lists("checkpoints", "Checkpoint", "allowed_roles_or_users", everyone=True),
        ),
    ]
