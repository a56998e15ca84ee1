"""inferences 0010: jobs started before the gallery's columns get the checkpoint and sampler they ran."""

import pytest

from tests.helpers import migrate

BEFORE = [("inferences", "0009_job_preview_model_sampler")]
AFTER = [("inferences", "0010_gallery_columns_of_earlier_jobs")]


@pytest.mark.django_db(transaction=True)
def test_earlier_jobs_get_their_model_and_sampler():
    old = migrate(BEFORE)
    jobs = old.get_model("inferences", "InferenceJob").objects
    planned = jobs.create(
        task_type="txt2img", inference_type="Async",
        plan={"version": 1, "request": {"$type": "Generation", "sampler": "DPM++ 2M"},
              "models": {"checkpoint": {"path": "/x", "name": "v1-5.safetensors", "sha256": ""}}},
    )  # fmt: skip
    unplanned = jobs.create(
        task_type="txt2img", inference_type="Async", used_models={"Stable-diffusion": [{"model_name": "old.ckpt"}]}
    )
    removal = jobs.create(task_type="rembg", inference_type="Async", plan={"version": 1, "request": {}})
    new = migrate(AFTER)
    rows = {
        job.pk: (job.model_name, job.sampler_name) for job in new.get_model("inferences", "InferenceJob").objects.all()
    }
    assert rows == {
        planned.pk: ("v1-5.safetensors", "DPM++ 2M"), unplanned.pk: ("old.ckpt", ""), removal.pk: ("", ""),
    }  # fmt: skip
    migrate(BEFORE)
    migrate(AFTER)
