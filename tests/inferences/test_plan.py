"""The job plan (issue 27.1): made once at `start`, stored on the job's row with its pictures as blobs, and run by
the worker without parsing the payload, resolving model names or estimating memory again."""

import json

import pytest
from PIL import Image

from esd.storage import get_storage
from inferences import execution
from inferences.engine import runner
from inferences.engine.request import plan as plan_module
from inferences.engine.request.identify import header_entries
from inferences.engine.request.limits import Limits
from inferences.engine.request.options import JobFiles
from inferences.engine.request.plan import (
    BLOB_CHARS,
    PLAN_VERSION,
    PlanError,
    plan_from_json,
    plan_job,
    plan_to_json,
    planned_checkpoint,
)
from inferences.models import InferenceJob

from .conftest import png_b64, red_disc, txt2img
from .jobs import serve


def header_of(model):
    return header_entries(model.path)


def stored(plan):
    """The plan as the row keeps it (JSON that PostgreSQL takes: no Infinity) and its blobs."""
    blobs: dict[str, bytes] = {}
    document = json.loads(json.dumps(plan_to_json(plan, blobs.__setitem__), allow_nan=False))
    return document, blobs


def test_a_plan_reads_back_as_it_was_made(models):
    files = JobFiles(
        checkpoint=models["checkpoint"], checkpoints=(models["checkpoint"], models["other"]), vaes=(models["vae"],),
        loras=(models["lora"],), embeddings=(models["embedding"],), controlnets=(models["controlnet"],),
        upscalers=(models["esrgan"],),
    )  # fmt: skip
    hires = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "2x-TinyESRGAN", "hr_checkpoint_name": "tiny-other"}
    long_prompt = "style cat <lora:watercolor:0.5> <lora:watercolor:0.25>, " + "fur, " * 3500
    generation = txt2img(prompt=long_prompt, s_tmax=float("inf"), **hires)
    unit = {"module": "canny", "model": "control_tiny_canny", "image": png_b64(red_disc((64, 48)))}
    img2img = txt2img(
        init_images=[png_b64(red_disc())], mask=png_b64(Image.new("L", (96, 80), 255)), denoising_strength=0.5,
        alwayson_scripts={"controlnet": {"args": [unit]}},
    )  # fmt: skip
    for task, payload in (("txt2img", generation), ("img2img", img2img)):
        plan = plan_job(task, payload, files, Limits(load_images=False), header_of)
        document, blobs = stored(plan)
        assert document["version"] == PLAN_VERSION and len(json.dumps(document)) < 8 * 1024
        assert plan_from_json(document, blobs.__getitem__) == plan
    txt2img_plan = plan_job("txt2img", generation, files, Limits(load_images=False), header_of)
    models_used = txt2img_plan.models
    assert [(lora.file.name, lora.weight) for lora in models_used.loras] == [("watercolor.safetensors", 0.75)]
    assert models_used.hires_checkpoint == models["other"] and models_used.upscaler("hr_upscaler") == models["esrgan"]
    assert [file.name for file in models_used.embeddings] == ["style.safetensors"]
    assert len(long_prompt) > BLOB_CHARS and txt2img_plan.request.parameters["s_tmax"] == float("inf")


def test_a_plan_of_another_version_or_damaged_fails_saying_so(files):
    plan = plan_job("txt2img", txt2img(), files, Limits(), header_of)
    document, blobs = stored(plan)
    with pytest.raises(PlanError, match=r"another version of the server \(plan format 0, this worker reads 1\)"):
        plan_from_json({**document, "version": 0}, blobs.__getitem__)
    with pytest.raises(PlanError, match="the job has no plan"):
        plan_from_json(None, blobs.__getitem__)
    with pytest.raises(PlanError, match=r"fields this server does not know \(colour\)"):
        plan_from_json({**document, "request": {**document["request"], "colour": 1}}, blobs.__getitem__)
    with pytest.raises(PlanError, match=r"holds 'many' as its plan\.request\.steps, where a int belongs"):
        plan_from_json({**document, "request": {**document["request"], "steps": "many"}}, blobs.__getitem__)
    with pytest.raises(PlanError, match=r"names a blob '\.\./\.\./secret' it cannot have"):
        plan_from_json({**document, "request": {**document["request"], "prompt": {"$text": "../../secret"}}}, {}.get)
    picture = plan_job(
        "img2img", txt2img(init_images=[png_b64(red_disc())]), files, Limits(load_images=False), header_of
    )
    with pytest.raises(PlanError, match=r"holds a plan\.request\.init_images\[0\] that is no picture"):
        plan_from_json(stored(picture)[0], lambda name: b"not a picture")
    trailing = {"$text": "0" * 64 + ".txt\n"}  # `$` would let a newline through: names are matched whole
    with pytest.raises(PlanError, match="names a blob"):
        plan_from_json({**document, "request": {**document["request"], "prompt": trailing}}, {}.get)


def test_the_worker_runs_the_stored_plan_without_working_anything_out_again(site, monkeypatch):
    serve(site, "Async", queues={"endpoint.elsewhere"})  # the endpoint is in service; nothing runs the job yet
    payload = txt2img(init_images=[png_b64(red_disc())], denoising_strength=0.5, steps=2)
    job_id = site.submit(payload, task="img2img")
    assert site.start(job_id).status == 202
    job = InferenceJob.objects.get(pk=job_id)
    assert job.plan["version"] == PLAN_VERSION and job.plan["task"] == "img2img" and job.plan["batch_key"] == ""
    picture = job.plan["request"]["init_images"][0]["$image"]
    assert get_storage().size(job.plan_folder + picture) is not None  # the picture as sent, beside the plan

    def worked_out_again(*args, **kwargs):
        raise AssertionError("the worker worked out the job again")

    for name in ("parse_request", "resolve_models", "memory_needs"):
        monkeypatch.setattr(plan_module, name, worked_out_again)
    monkeypatch.setattr(runner, "plan_job", worked_out_again)
    execution.inference_execute(job_id=job_id, worker=None, device="cpu")
    job.refresh_from_db()
    assert job.status == "succeed" and job.image_names == ["image_0.png"]


def test_a_job_started_before_plans_fails_with_its_reason(site):
    serve(site, "Async", queues={"endpoint.elsewhere"})
    job_id = site.submit(txt2img(steps=2))
    assert site.start(job_id).status == 202
    InferenceJob.objects.filter(pk=job_id).update(plan=None)  # as an earlier version left it
    execution.inference_execute(job_id=job_id, worker=None, device="cpu")
    job = InferenceJob.objects.get(pk=job_id)
    assert job.status == "failed" and "the job has no plan" in job.error and "start it again" in job.error


def test_a_stored_plans_checkpoint_reads_back_without_its_blobs(models):
    """What a worker's warm-up asks of its endpoint's last job (inferences/warmup.py): the plan's checkpoint, read
    from the row alone, even when the plan has blobs (a long prompt)."""
    files = JobFiles(checkpoint=models["checkpoint"])
    plan = plan_job("txt2img", txt2img(prompt="fur, " * 3500), files, Limits(load_images=False), header_of)
    document, blobs = stored(plan)
    assert blobs  # the long prompt is a blob, which planned_checkpoint never fetches
    assert planned_checkpoint(document) == plan.models.checkpoint == models["checkpoint"]
    assert planned_checkpoint({**document, "version": PLAN_VERSION + 1}) is None
    assert planned_checkpoint({**document, "models": {"checkpoint": {"name": 3}}}) is None
    assert planned_checkpoint(None) is None and planned_checkpoint({"version": PLAN_VERSION}) is None
