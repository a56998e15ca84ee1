"""The inference routes end to end (esd-behaviour.md §9): create → PUT the payload to the presigned URL → start →
poll → download the PNGs, with real endpoint workers, against the local store and the S3 server on loopback."""

import base64
import json
import time

import pytest
from PIL import Image

from accounts import grants
from esd.storage import get_storage
from inferences.models import InferenceJob
from tests.conftest import wait_for
from tests.esd.test_storage import http

from .conftest import png_b64, red_disc, txt2img
from .jobs import deploy, images_of, result_document, serve


@pytest.fixture
def site(transactional_db, esd, store, admin_user, make_role, make_user, token_for, models, settings):
    settings.ESD_WORKER_HEARTBEAT_SECONDS = 0.2
    deployment = deploy(esd, admin_user, make_role, make_user, token_for, models["checkpoint"].path)
    yield deployment
    for worker in deployment.workers:
        worker.stop()


@pytest.fixture
def served(site):
    serve(site, "Async")
    serve(site, "Real-time")
    return site


def test_async_txt2img_end_to_end(served):
    created = served.create()
    assert created.status == 201
    inference = created.body["data"]["inference"]
    assert inference["type"] == "txt2img" and len(inference["id"]) == 36
    assert inference["api_params_s3_location"].endswith(f"txt2img/infer_v2/{inference['id']}/api_param.json")
    assert inference["models"] == [
        {"id": str(served.checkpoint.pk), "name": ["tiny-sd1.safetensors"], "type": "Stable-diffusion"},
        {"id": "VAE", "name": ["Automatic"], "type": "VAE"},
    ]
    status, _, _ = http(
        "PUT", inference["api_params_s3_upload_url"], json.dumps(txt2img(batch_size=2, n_iter=2)).encode()
    )
    assert status == 200
    started = served.start(inference["id"])
    assert started.status == 202
    assert started.body["data"]["inference"]["status"] == "inprogress"
    assert started.body["data"]["inference"]["endpoint_name"] == served.endpoints["Async"].name
    data = served.wait(inference["id"])
    assert data["status"] == "succeed", data["sagemakerRaw"]
    assert data["image_names"] == ["image_0.png", "image_1.png", "image_2.png", "image_3.png"]
    assert [(image.size, image.format) for image in images_of(data)] == [((64, 64), "PNG")] * 4
    document = result_document(data)
    info = json.loads(document["info"])
    assert len(info["infotexts"]) == 4 and info["all_seeds"] == [1234, 1235, 1236, 1237]
    assert document["inference_id"] == inference["id"] and document["endpont_name"] == served.endpoints["Async"].name
    assert data["progress"] == 1.0 and data["timings"]["inference_seconds"] > 0
    assert set(data["timings"]) >= {"queued_seconds", "fetch_seconds", "model_seconds", "upload_seconds"}


def test_real_time_answers_the_finished_job(served):
    job_id = served.submit(txt2img(), kind="Real-time")
    answer = served.start(job_id)
    assert answer.status == 200, answer.body
    data = answer.body["data"]
    assert data["InferenceJobId"] == job_id and data["status"] == "succeed" and data["taskType"] == "txt2img"
    assert [image.size for image in images_of(data)] == [(64, 64)]
    assert json.loads(result_document(data)["info"])["infotexts"][0].startswith("a photo of a cat")


def test_real_time_timeout_is_504_and_the_job_goes_on(served, settings):
    settings.ESD_REALTIME_TIMEOUT = 0.05
    job_id = served.submit(txt2img(steps=20, width=128, height=128), kind="Real-time")
    answer = served.start(job_id)
    assert answer.status == 504 and answer.body == {"message": "Endpoint request timed out"}
    assert served.wait(job_id)["status"] == "succeed"


def test_img2img_and_rembg_end_to_end(served, settings):
    settings.ESD_REALTIME_TIMEOUT = 120  # generous on a loaded machine: this test is about the flow, not the wait
    job_id = served.submit(
        txt2img(init_images=[png_b64(red_disc())], denoising_strength=0.5, width=96, height=64), task="img2img"
    )
    assert served.start(job_id).status == 202
    data = served.wait(job_id)
    assert data["status"] == "succeed", data["sagemakerRaw"]
    assert [image.size for image in images_of(data)] == [(96, 64)]

    job_id = served.submit(
        {"input_image": png_b64(red_disc((120, 90))), "model": "u2netp"}, task="rembg", kind="Real-time"
    )
    answer = served.start(job_id)
    assert answer.status == 200, answer.body
    assert answer.body["data"]["image_names"] == ["image.png"]
    [image] = images_of(answer.body["data"])
    assert (image.mode, image.size) == ("RGBA", (120, 90))
    assert result_document(answer.body["data"]) == {
        "endpont_name": served.endpoints["Real-time"].name,
        "inference_id": job_id,
    }


def test_starting_twice_or_before_the_upload(served):
    created = served.create().body["data"]["inference"]
    early = served.start(created["id"])
    assert early.status == 400 and "has not been uploaded" in early.body["message"]
    assert InferenceJob.objects.get(pk=created["id"]).status == "created"
    http("PUT", created["api_params_s3_upload_url"], json.dumps(txt2img()).encode())
    assert served.start(created["id"]).status == 202
    again = served.start(created["id"])
    assert again.status == 400 and "has already been started" in again.body["message"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (json.dumps(txt2img(width=513)).encode(), "width must be a multiple of 8"),
        (json.dumps(txt2img(sampler_name="Magic")).encode(), "sampler_name 'Magic' is not supported"),
        (
            json.dumps(
                txt2img(override_settings={"sd_model_checkpoint": "v1-5-pruned.safetensors [6ce0161689]"})
            ).encode(),
            "sd_model_checkpoint names 'v1-5-pruned.safetensors', but the job's Stable-diffusion models are: tiny-sd1",
        ),
        # issue 29.5: the top-level key (ESD's WebUI sends it too) names the model as surely, and was ignored
        (
            json.dumps(txt2img(sd_model_checkpoint="v1-5-pruned.safetensors [6ce0161689]")).encode(),
            "sd_model_checkpoint names 'v1-5-pruned.safetensors', but the job's Stable-diffusion models are: tiny-sd1",
        ),
        (
            json.dumps(
                txt2img(
                    alwayson_scripts={
                        "controlnet": {
                            "args": [
                                {
                                    "module": "canny",
                                    "model": "control_v11p_sd15_canny [d14c016b]",
                                    "image": png_b64(red_disc()),
                                }
                            ]
                        }
                    }
                )
            ).encode(),
            "alwayson_scripts.controlnet.args[0].model names 'control_v11p_sd15_canny', but the job's ControlNet "
            "models are: none",
        ),
        (
            json.dumps(
                txt2img(
                    alwayson_scripts={
                        "controlnet": {
                            "args": [{"module": "depth_leres", "model": "control_depth", "image": png_b64(red_disc())}]
                        }
                    }
                )
            ).encode(),
            "the preprocessor 'depth_leres' runs an annotator model whose weights this server does not have",
        ),
        (
            json.dumps(txt2img(enable_hr=True, hr_upscaler="4x-UltraSharp")).encode(),
            "hr_upscaler names '4x-UltraSharp', but the job's Upscaler models are: none",
        ),
    ],
)
def test_a_payload_that_cannot_run_is_refused_and_the_job_stays_created(served, payload, message):
    job_id = served.submit(payload)
    answer = served.start(job_id)
    assert answer.status == 400 and message in answer.body["message"]
    job = InferenceJob.objects.get(pk=job_id)
    assert job.status == "created" and message in job.error


def test_models_and_endpoints_must_still_be_there_at_start(served, admin_user):
    job_id = served.submit(txt2img())
    from checkpoints.models import Checkpoint

    Checkpoint.objects.filter(pk=served.checkpoint.pk).update(status="Disabled")
    answer = served.start(job_id)
    assert answer.status == 400 and "checkpoint with name tiny-sd1.safetensors" in answer.body["message"]
    Checkpoint.objects.filter(pk=served.checkpoint.pk).update(status="Active")
    served.endpoints["Async"].delete()
    answer = served.start(job_id)
    assert answer.status == 400 and answer.body["message"] == 'no available Async endpoints for user "alice"'


def test_create_checks_endpoints_then_models_and_task(site, make_user, token_for):
    # ESD's order: the endpoint first (no worker serves one yet, so none is InService), then the models
    assert site.create().body["message"] == 'no available Async endpoints for user "alice"'
    serve(site, "Async")
    missing = site.create(**{"Stable-diffusion": ["nope.safetensors"], "Lora": ["x.safetensors"]})
    assert missing.status == 400
    assert missing.body["message"] == (
        "checkpoint with name nope.safetensors, type Stable-diffusion is not found "
        "checkpoint with name x.safetensors, type Lora is not found"
    )
    no_model = site.create(**{"VAE": ["Automatic"]})
    assert no_model.status == 400 and "needs a Stable-diffusion model" in no_model.body["message"]
    bad_task = site.create("controlnet")
    assert bad_task.status == 400 and bad_task.body["message"].startswith("task type controlnet should be in")
    outsider = make_user("bob", ["inference:create", "inference:list"])
    refused = site.create(token=token_for(outsider))
    assert refused.status == 400 and refused.body["message"] == 'no available Async endpoints for user "bob"'
    unknown = site.create(task="rembg", kind="Async")
    assert unknown.status == 201 and "models" not in unknown.body["data"]["inference"]


def test_another_users_job_is_404_and_is_not_deleted(served, make_user, token_for):
    job_id = served.submit(txt2img())
    other = token_for(make_user("mallory", ["inference:create", "inference:list"]))
    assert served.get(job_id, token=other).status == 404
    assert served.get(job_id, token=other).body["message"] == f"inference with id {job_id} not found"
    assert served.start(job_id, token=other).status == 404
    assert served.esd.call("PUT", f"inferences/{job_id}/cancel", token=other).status == 404
    assert served.esd.call("DELETE", "inferences", {"inference_id_list": [job_id]}, token=other).status == 204
    assert InferenceJob.objects.filter(pk=job_id).exists()
    listed = served.esd.call("GET", "inferences", token=other).body["data"]["inferences"]
    assert listed == []


def test_an_upload_url_writes_only_its_own_job(served):
    first = served.create().body["data"]["inference"]
    second = served.create().body["data"]["inference"]
    http("PUT", first["api_params_s3_upload_url"], json.dumps(txt2img()).encode())
    answer = served.start(second["id"])
    assert answer.status == 400 and "has not been uploaded" in answer.body["message"]


def test_cancel_a_queued_job_a_running_job_and_a_finished_one(site):
    # a worker that keeps the endpoint InService but listens elsewhere: jobs stay queued
    serve(site, "Async", queues={"endpoint.elsewhere"})
    job_id = site.submit(txt2img())
    assert site.start(job_id).status == 202
    cancelled = site.esd.call("PUT", f"inferences/{job_id}/cancel", token=site.token)
    assert cancelled.status == 200
    assert cancelled.body["data"]["status"] == "failed" and cancelled.body["data"]["cancelled"] is True
    assert cancelled.body["data"]["sagemakerRaw"] == "cancelled by alice"
    finished = site.esd.call("PUT", f"inferences/{job_id}/cancel", token=site.token)
    assert finished.status == 400 and "has already finished" in finished.body["message"]

    serve(site, "Real-time")
    job_id = site.submit(txt2img(steps=150, width=192, height=192, sampler_name="Euler"))
    InferenceJob.objects.filter(pk=job_id).update(inference_type="Async")
    Endpoint = type(site.endpoints["Real-time"])
    Endpoint.objects.filter(pk=site.endpoints["Real-time"].pk).update(endpoint_type="Async")
    Endpoint.objects.filter(pk=site.endpoints["Async"].pk).update(status="Deleting")
    assert site.start(job_id).status == 202
    wait_for(lambda: InferenceJob.objects.get(pk=job_id).progress_step > 0)
    assert site.esd.call("PUT", f"inferences/{job_id}/cancel", token=site.token).status == 200
    data = site.wait(job_id)
    job = InferenceJob.objects.get(pk=job_id)
    assert data["status"] == "failed" and job.cancelled and job.progress_step < 150


def test_delete_removes_the_job_its_payload_and_outputs(served):
    job_id = served.submit(txt2img())
    served.start(job_id)
    served.wait(job_id)
    job = InferenceJob.objects.get(pk=job_id)
    storage = get_storage()
    assert storage.list_keys(job.result_folder)
    answer = served.esd.call("DELETE", "inferences", {"inference_id_list": [job_id, job_id, "bad"]}, token=served.token)
    assert answer.status == 204
    assert not InferenceJob.objects.filter(pk=job_id).exists()
    assert storage.list_keys(job.result_folder) == [] and storage.size(job.payload_key) is None


def test_list_is_newest_first_and_keyset_paginated(served):
    ids = [served.create().body["data"]["inference"]["id"] for _ in range(5)]
    page = served.esd.call("GET", "inferences", token=served.token, query={"limit": "2"}).body["data"]
    seen = [item["InferenceJobId"] for item in page["inferences"]]
    while page["last_evaluated_key"]:
        page = served.esd.call(
            "GET",
            "inferences",
            token=served.token,
            query={"limit": "2", "exclusive_start_key": page["last_evaluated_key"]},
        ).body["data"]
        seen += [item["InferenceJobId"] for item in page["inferences"]]
    assert seen == list(reversed(ids))
    everything = served.esd.call("GET", "inferences", token=served.token).body["data"]
    assert "last_evaluated_key" not in everything and len(everything["inferences"]) == 5
    item = everything["inferences"][0]
    assert set(item) >= {"InferenceJobId", "status", "taskType", "owner_group_or_role", "inference_info_name",
                         "startTime", "createTime", "image_names", "sagemakerRaw", "completeTime", "params",
                         "inference_type"}  # fmt: skip
    bad = served.esd.call("GET", "inferences", token=served.token, query={"exclusive_start_key": "zzz"})
    assert bad.status == 400
    filtered = served.esd.call("GET", "inferences", token=served.token, query={"status": "succeed"}).body["data"]
    assert filtered["inferences"] == []


def test_a_failed_job_says_why(served):
    # the start reads a picture's header only; the worker decodes it, and a damaged one fails the job, saying which
    truncated = base64.b64encode(base64.b64decode(png_b64(red_disc()))[:-40]).decode()
    job_id = served.submit(txt2img(init_images=[truncated], denoising_strength=0.5, steps=2), task="img2img")
    assert served.start(job_id).status == 202
    data = served.wait(job_id)
    assert data["status"] == "failed" and "init_images[0] is a damaged or truncated image" in data["sagemakerRaw"]


def test_a_model_the_job_lacks_is_refused_at_start(served):
    refused = served.start(served.submit(txt2img(prompt="a cat <lora:nothere:1>")))
    assert refused.status == 400
    assert "<lora:nothere> names 'nothere', but the job's Lora models are: none" in refused.body["message"]


def test_ignored_parameters_are_reported(served):
    job_id = served.submit(txt2img(tiling=True, restore_faces=True))
    served.start(job_id)
    data = served.wait(job_id)
    assert data["status"] == "succeed" and data["ignored_parameters"] == ["restore_faces", "tiling"]
    assert result_document(data)["ignored_parameters"] == ["restore_faces", "tiling"]
    assert isinstance(images_of(data)[0], Image.Image)
    assert time.time() > 0


def test_esd_mode_webui_flow_with_only_the_api_key(served, esd_mode, settings):
    settings.ESD_API_KEY = "deploy-key"
    key = {"x-api-key": "deploy-key"}
    body = {
        "task_type": "txt2img", "inference_type": "Async", "user_id": "alice",
        "models": {"Stable-diffusion": ["tiny-sd1.safetensors"], "VAE": ["Automatic"]}, "filters": {},
    }  # fmt: skip
    created = served.esd.call("POST", "inferences", body, headers=key)
    assert created.status == 201, created.body
    inference = created.body["data"]["inference"]
    http("PUT", inference["api_params_s3_upload_url"], json.dumps(txt2img()).encode())
    assert served.esd.call("PUT", f"inferences/{inference['id']}/start", headers=key).status == 202
    deadline = time.monotonic() + 60
    while (data := served.esd.call("GET", f"inferences/{inference['id']}", headers=key).body["data"])["status"] not in (
        "succeed",
        "failed",
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert data["status"] == "succeed" and data["owner_group_or_role"] == ["alice"]
    assert served.esd.call("GET", "inferences/00000000-0000-0000-0000-000000000000", headers=key).status == 404
    assert served.esd.call("POST", "inferences", {**body, "user_id": "nobody"}, headers=key).body["message"] == (
        'user: "nobody" not exist'
    )


def test_a_named_endpoint_is_used_or_refused(served):
    body = {
        "task_type": "txt2img", "inference_type": "Async",
        "models": {"Stable-diffusion": ["tiny-sd1.safetensors"]}, "filters": {},
    }  # fmt: skip
    unknown = served.esd.call(
        "POST", "inferences", {**body, "sagemaker_endpoint_name": "esd-async-nope"}, token=served.token
    )
    assert (
        unknown.status == 400 and unknown.body["message"] == "sagemaker endpoint with name esd-async-nope is not found"
    )
    name = served.endpoints["Async"].name
    created = served.esd.call("POST", "inferences", {**body, "sagemaker_endpoint_name": name}, token=served.token)
    job_id = created.body["data"]["inference"]["id"]
    assert InferenceJob.objects.get(pk=job_id).endpoint_name == name


def test_unhonoured_parameters_can_be_refused_instead_of_reported(served, settings):
    payload = json.dumps(txt2img(tiling=True, restore_faces=True)).encode()
    reported = served.submit(payload)
    assert served.start(reported).status == 202  # report (the default): the job runs and lists them
    settings.ESD_UNHONOURED_PARAMETERS = "refuse"
    refused = served.submit(payload)
    answer = served.start(refused)
    assert answer.status == 400
    assert "ESD_UNHONOURED_PARAMETERS=refuse" in answer.body["message"]
    assert "tiling" in answer.body["message"] and "restore_faces" in answer.body["message"]
    assert InferenceJob.objects.get(pk=refused).status == "created"
    assert served.start(served.submit(json.dumps(txt2img()).encode())).status == 202  # a clean payload still runs


def test_controlnet_hires_fix_and_an_uploaded_upscaler_through_the_api(served, admin_user, models):
    """A job whose models include a ControlNet and an upscaler uploaded as checkpoints of those types: the worker
    fetches them with the checkpoint, runs the unit and the hires fix, and returns the picture and the map."""
    from checkpoints import services as checkpoint_services

    uploaded = {}
    for kind, key in (("ControlNet", "controlnet"), ("Upscaler", "compact")):
        with models[key].path.open("rb") as handle:
            checkpoint = checkpoint_services.checkpoint_create_from_upload(
                actor=admin_user, type=kind, name=models[key].name, chunks=iter([handle.read()])
            )
        grants.set_visibility(checkpoint, ["role-alice"])
        uploaded[kind] = models[key].name
    unit = {"enabled": True, "module": "canny", "model": "control_tiny_canny", "image": png_b64(red_disc()),
            "processor_res": 64}  # fmt: skip
    payload = txt2img(
        steps=4, enable_hr=True, hr_scale=1.5, hr_upscaler="2x-TinyCompact", hr_second_pass_steps=2,
        denoising_strength=0.5, alwayson_scripts={"controlnet": {"args": [unit]}},
    )  # fmt: skip
    # the WebUI names the ControlNet file it has, a .pth: the job takes the .safetensors release uploaded here
    pth = uploaded["ControlNet"].replace(".safetensors", ".pth")
    job_id = served.submit(
        payload,
        **{"Stable-diffusion": [served.checkpoint.names[0]], "ControlNet": [pth], "Upscaler": [uploaded["Upscaler"]]},
    )  # fmt: skip
    job = InferenceJob.objects.get(pk=job_id)
    assert [entry["model_name"] for entry in job.used_models["ControlNet"]] == [uploaded["ControlNet"]]
    assert served.start(job_id).status == 202
    data = served.wait(job_id)
    assert data["status"] == "succeed", data
    assert data["ignored_parameters"] == []
    generated, detected = images_of(data)
    assert generated.size == (96, 96) and detected.size == (77, 64)
    text = generated.info["parameters"]
    # A1111's order: the ControlNet unit (the extension's `process`) before the hires fields (`init`)
    assert 'Denoising strength: 0.5, RNG: CPU, ControlNet 0: "Module: canny, Model: control_tiny_canny [' in text
    assert text.endswith("Hires upscale: 1.5, Hires steps: 2, Hires upscaler: 2x-TinyCompact, Version: esd-server")


def test_extra_single_image_with_an_uploaded_upscaler_through_the_api(served, admin_user, models):
    from checkpoints import services as checkpoint_services

    with models["esrgan"].path.open("rb") as handle:
        checkpoint = checkpoint_services.checkpoint_create_from_upload(
            actor=admin_user, type="Upscaler", name=models["esrgan"].name, chunks=iter([handle.read()])
        )
    grants.set_visibility(checkpoint, ["role-alice"])
    payload = {"image": png_b64(red_disc((40, 32))), "upscaler_1": "2x-TinyESRGAN", "upscaling_resize": 2}
    # ESD clients send their current checkpoint with every task: it is not needed here, and not checked
    job_id = served.submit(
        payload, task="extra-single-image", **{"Upscaler": [models["esrgan"].name], "Stable-diffusion": ["gone.ckpt"]}
    )
    assert served.start(job_id).status == 202
    data = served.wait(job_id)
    assert data["status"] == "succeed", data
    [upscaled] = images_of(data)
    assert upscaled.size == (80, 64)


@pytest.mark.parametrize("store", ["local"], indirect=True)  # S3's presigned PUT cannot carry a size limit
def test_a_payload_url_of_the_local_store_takes_no_more_than_a_payload(served, settings):
    # the local store's presigned PUT took up to a checkpoint's 20 GB for any key; a job's URL now carries its limit
    settings.ESD_MAX_PAYLOAD_BYTES = 100
    inference = served.create().body["data"]["inference"]
    status, _, body = http("PUT", inference["api_params_s3_upload_url"], b" " * 101)
    assert status == 413 and b"larger than the 100-byte limit" in body
    assert http("PUT", inference["api_params_s3_upload_url"], json.dumps(txt2img())[:100].encode())[0] == 200
