"""inferences 0008: the status column and the cancel flags become one explicit state, with ESD's status generated
from it; run on jobs in every old combination, and back (issue 27.3)."""

import pytest
from django.db.migrations.loader import MigrationLoader

from tests.helpers import migrate

BEFORE = [("inferences", "0007_job_plan")]
AFTER = [
    node for node in MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes() if node[0] == "inferences"
]

# old columns (status, claimed, cancel_requested, cancelled) → the state, and the status it generates
CASES = [
    (("created", False, False, False), "created", "created"),
    (("inprogress", False, False, False), "queued", "inprogress"),
    (("inprogress", True, False, False), "running", "inprogress"),
    (("inprogress", True, True, False), "cancelling", "inprogress"),
    (("succeed", True, False, False), "succeeded", "succeed"),
    (("failed", True, False, False), "failed", "failed"),
    (("failed", False, True, True), "cancelled", "failed"),
]


@pytest.mark.django_db(transaction=True)
def test_each_old_combination_becomes_its_state_and_comes_back():
    old = migrate(BEFORE)
    jobs = old.get_model("inferences", "InferenceJob").objects
    made = {}
    for (status, claimed, cancel_requested, cancelled), _, _ in CASES:
        job = jobs.create(
            task_type="txt2img", inference_type="Async", status=status, cancel_requested=cancel_requested,
            cancelled=cancelled, claimed_at="2026-12-06T00:00Z" if claimed else None,
        )  # fmt: skip
        made[job.pk] = (status, claimed, cancel_requested, cancelled)
    new = migrate(AFTER)
    rows = {job.pk: (job.state, job.status) for job in new.get_model("inferences", "InferenceJob").objects.all()}
    expected = {pk: (state, status) for pk, old_columns in made.items() for columns, state, status in CASES
                if columns == old_columns}  # fmt: skip
    assert rows == expected
    back = migrate(BEFORE)
    columns = back.get_model("inferences", "InferenceJob").objects.values_list(
        "pk", "status", "cancel_requested", "cancelled"
    )
    assert {pk: (status, asked, done) for pk, status, asked, done in columns} == {
        pk: (status, asked, done) for pk, (status, _, asked, done) in made.items()
    }
    migrate(AFTER)
