"""An explicit job state (issue 27.3): `state` replaces the status column and the cancel flags; ESD's status is
generated from it by the database."""

from django.db import migrations, models
from django.db.models import Case, Q, Value, When

# (state, which rows of the old columns it is), in an order where each row meets its first match
STATES = [
    ("created", Q(status="created")),
    ("cancelled", Q(status="failed", cancelled=True)),
    ("failed", Q(status="failed")),
    ("succeeded", Q(status="succeed")),
    ("cancelling", Q(status="inprogress", cancel_requested=True)),
    ("queued", Q(status="inprogress", claimed_at__isnull=True)),
    ("running", Q(status="inprogress")),
]


def fill_states(apps, schema_editor):
    InferenceJob = apps.get_model("inferences", "InferenceJob")
    InferenceJob.objects.update(state=Case(*(When(rows, then=Value(state)) for state, rows in STATES)))


WIRE = {"created": "created", "queued": "inprogress", "running": "inprogress", "cancelling": "inprogress",
        "succeeded": "succeed", "failed": "failed", "cancelled": "failed"}  # fmt: skip


def fill_columns(apps, schema_editor):
    InferenceJob = apps.get_model("inferences", "InferenceJob")
    InferenceJob.objects.update(status=Case(*(When(state=state, then=Value(wire)) for state, wire in WIRE.items())))
    InferenceJob.objects.filter(state="cancelling").update(cancel_requested=True)
    InferenceJob.objects.filter(state="cancelled").update(cancel_requested=True, cancelled=True)


class Migration(migrations.Migration):
    dependencies = [
        ("inferences", "0007_job_plan"),
    ]

    operations = [
        migrations.AddField(
            model_name="inferencejob",
            name="state",
            field=models.CharField(
                choices=[
                    ("created", "Created"),
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("cancelling", "Cancelling"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                    ("cancelled", "Cancelled"),
                ],
                default="created",
                editable=False,
                max_length=16,
            ),
        ),
        migrations.RunPython(fill_states, fill_columns),
        migrations.RemoveIndex(model_name="inferencejob", name="job_batch_queue"),
        migrations.RemoveField(model_name="inferencejob", name="cancel_requested"),
        migrations.RemoveField(model_name="inferencejob", name="cancelled"),
        migrations.RemoveField(model_name="inferencejob", name="status"),
        migrations.AddField(
            model_name="inferencejob",
            name="status",
            field=models.GeneratedField(
                db_index=True,
                db_persist=True,
                expression=Case(
                    When(state__in=["created"], then=Value("created")),
                    When(state__in=["queued", "running", "cancelling"], then=Value("inprogress")),
                    When(state__in=["succeeded"], then=Value("succeed")),
                    When(state__in=["failed", "cancelled"], then=Value("failed")),
                ),
                output_field=models.CharField(
                    choices=[
                        ("created", "Created"),
                        ("inprogress", "In Progress"),
                        ("succeed", "Succeed"),
                        ("failed", "Failed"),
                    ],
                    max_length=16,
                ),
            ),
        ),
        migrations.AlterField(
            model_name="inferencejob",
            name="claimed_at",
            field=models.DateTimeField(blank=True, help_text="When a worker took it (empty: not held).", null=True),
        ),
        migrations.AddIndex(
            model_name="inferencejob",
            index=models.Index(
                condition=Q(state="queued"), fields=["endpoint", "batch_key", "start_time"], name="job_batch_queue"
            ),
        ),
    ]
