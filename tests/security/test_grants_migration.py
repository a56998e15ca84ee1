"""The data migrations that turned ESD's JSON visibility lists into guardian grants, run on a database holding
objects made the old way, and back."""

import pytest
from django.db.migrations.loader import MigrationLoader

from tests.helpers import migrate

# accounts last: going back, the grant migrations (which read users) run before accounts loses its new column
BEFORE = [
    ("checkpoints", "0003_upscaler_type"),
    ("endpoints", "0002_endpoint_stopped_status"),
    ("inferences", "0002_job_message_id"),
    ("accounts", "0002_username_ignores_case"),
]
# the latest migrations: the test then reads with today's models, and leaves the schema as it found it
AFTER = [
    node
    for node in MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes()
    if node[0] in ("accounts", "checkpoints", "endpoints", "inferences")
]


@pytest.mark.django_db(transaction=True)
def test_the_lists_become_grants_and_come_back():
    old = migrate(BEFORE)
    group = old.get_model("auth", "Group").objects.create(name="team")
    users = old.get_model("accounts", "User").objects
    olive = users.create(username="olive")
    users.create(username="pat", creator="olive")
    old.get_model("accounts", "Role").objects.create(group=group, creator="olive")
    gone = old.get_model("auth", "Group").objects.create(name="made-by-the-departed")
    old.get_model("accounts", "Role").objects.create(group=gone, creator="departed")
    checkpoints = old.get_model("checkpoints", "Checkpoint").objects
    checkpoints.create(id="00000000-0000-0000-0000-000000000001", type="Lora", status="Active", created_by=olive,
                       allowed_roles_or_users=["team", "pat", "deleted-role"])  # fmt: skip
    checkpoints.create(id="00000000-0000-0000-0000-000000000002", type="Lora", status="Active", created_by=olive,
                       allowed_roles_or_users=["*"])  # fmt: skip
    checkpoints.create(id="00000000-0000-0000-0000-000000000003", type="Lora", status="Active", created_by=olive,
                       allowed_roles_or_users=[])  # fmt: skip
    old.get_model("endpoints", "Endpoint").objects.create(
        id="00000000-0000-0000-0000-0000000000e1", name="esd-async-team", endpoint_type="Async", instance_type="cpu",
        owner_group_or_role=["team"], created_by=olive,
    )  # fmt: skip
    old.get_model("inferences", "InferenceJob").objects.create(
        id="00000000-0000-0000-0000-0000000000f1", task_type="txt2img", inference_type="Async", created_by=olive,
        owner_group_or_role=["olive"],
    )  # fmt: skip

    migrate(AFTER)
    from accounts import grants
    from accounts.models import User
    from checkpoints.models import Checkpoint
    from endpoints.models import Endpoint
    from inferences.models import InferenceJob

    listed = {str(checkpoint.pk)[-1]: checkpoint for checkpoint in Checkpoint.objects.all()}
    assert listed["1"].allowed_roles_or_users == ["team", "pat"]  # the dangling name grants nothing
    assert (listed["2"].everyone, listed["2"].allowed_roles_or_users) == (True, ["*"])
    assert (listed["3"].everyone, listed["3"].allowed_roles_or_users) == (True, ["*"])  # ESD: empty hides nothing
    assert Endpoint.objects.get().owner_group_or_role == ["team"]
    job = InferenceJob.objects.get()
    assert job.owner_group_or_role == ["olive"]
    olive = User.objects.get(username="olive")
    assert all(grants.owns(olive, obj) for obj in [*listed.values(), Endpoint.objects.get(), job])
    assert not grants.owns(User.objects.get(username="pat"), listed["1"])
    # creators became links to the account (issue 26.8); a name whose account is gone links to nothing
    from accounts.models import Role

    assert User.objects.get(username="pat").created_by == olive
    assert Role.objects.get(group__name="team").created_by == olive
    assert Role.objects.get(group__name="made-by-the-departed").created_by is None

    back = migrate(BEFORE)
    creators = dict(back.get_model("accounts", "Role").objects.values_list("group__name", "creator"))
    assert (creators["team"], creators["made-by-the-departed"]) == ("olive", "")
    lists = dict(back.get_model("checkpoints", "Checkpoint").objects.values_list("id", "allowed_roles_or_users"))
    assert sorted(lists.values()) == [["*"], ["*"], ["team", "pat"]]
    assert list(back.get_model("endpoints", "Endpoint").objects.values_list("owner_group_or_role", flat=True)) == [
        ["team"]
    ]
    migrate(AFTER)
