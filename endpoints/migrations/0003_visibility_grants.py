"""ESD's JSON visibility list becomes guardian grants, the one record of who sees the endpoint
(accounts/grants.py); the list is now read from them."""

from django.db import migrations

from accounts.visibility_migration import grants_to_lists, lists_to_grants


class Migration(migrations.Migration):

    dependencies = [
        ("endpoints", "0002_endpoint_stopped_status"),
        ("accounts", "0002_username_ignores_case"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(
            lists_to_grants("endpoints", "Endpoint", "owner_group_or_role", everyone=False),
            grants_to_lists("endpoints", "Endpoint", "owner_group_or_role", everyone=False),
        ),
    ]
