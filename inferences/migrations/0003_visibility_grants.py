"""ESD's JSON visibility list becomes guardian grants, the one record of who sees the job
(accounts/grants.py); the list is now read from them."""

from django.db import migrations

from accounts.visibility_migration import grants_to_lists, lists_to_grants


class Migration(migrations.Migration):

    dependencies = [
        ("inferences", "0002_job_message_id"),
        ("accounts", "0002_username_ignores_case"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(
            lists_to_grants("inferences", "InferenceJob", "owner_group_or_role", everyone=False),
            grants_to_lists("inferences", "InferenceJob", "owner_group_or_role", everyone=False),
        ),
    ]
