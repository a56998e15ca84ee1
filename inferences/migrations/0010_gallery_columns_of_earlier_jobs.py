"""Jobs started before 0009 get the checkpoint and sampler they ran, for the gallery's filters: read from their
stored plan (the request's `sampler`, the models' `checkpoint`), else the checkpoint from `used_models`."""

from django.db import migrations

BATCH = 500


def fill(apps, schema_editor):
    jobs = apps.get_model("inferences", "InferenceJob")
    pending = []
    for job in jobs.objects.filter(model_name="", sampler_name="").only("pk", "plan", "used_models").iterator():
        plan = job.plan if isinstance(job.plan, dict) else {}
        request = plan.get("request") if isinstance(plan.get("request"), dict) else {}
        models = plan.get("models") if isinstance(plan.get("models"), dict) else {}
        checkpoint = models.get("checkpoint") if isinstance(models.get("checkpoint"), dict) else {}
        used = (job.used_models or {}).get("Stable-diffusion") or [{}]
        job.model_name = str(checkpoint.get("name") or (used[0] or {}).get("model_name") or "")[:255]
        sampler = request.get("sampler")
        job.sampler_name = sampler[:64] if isinstance(sampler, str) else ""
        if job.model_name or job.sampler_name:
            pending.append(job)
        if len(pending) >= BATCH:
            jobs.objects.bulk_update(pending, ["model_name", "sampler_name"])
            pending = []
    jobs.objects.bulk_update(pending, ["model_name", "sampler_name"])


class Migration(migrations.Migration):
    dependencies = [("inferences", "0009_job_preview_model_sampler")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
