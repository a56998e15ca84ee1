"""`start` in the web process: a job's images are checked by their headers against one budget for the whole job."""

from PIL import Image

from inferences.models import InferenceJob

from .conftest import png_b64, txt2img
from .jobs import serve


def test_start_refuses_a_job_whose_images_together_are_too_large(site):
    serve(site, "Async", queues={"endpoint.elsewhere"})  # the endpoint is in service; nothing runs
    big = png_b64(Image.new("RGB", (4096, 4096), "white"))
    job_id = site.submit(txt2img(init_images=[big] * 8, batch_size=8, denoising_strength=0.5), task="img2img")
    refused = site.start(job_id)
    assert refused.status == 400
    assert "the job's 8 images hold 134217728 pixels in all; at most 50331648" in refused.body["message"]
    job = InferenceJob.objects.get(pk=job_id)
    assert job.status == "created" and "134217728 pixels" in job.error


def test_start_refuses_a_preprocessor_parameter_beyond_its_slider(site):
    # Issue 26.12: blur_gaussian with threshold_a 1024 on a 2048-pixel image made a 1-step 64x64 job take 130 s
    serve(site, "Async", queues={"endpoint.elsewhere"})
    unit = {
        "enabled": True, "module": "blur_gaussian", "model": "control_tiny_canny", "threshold_a": 1024, "processor_res": 2048,
        "image": png_b64(Image.new("RGB", (2048, 2048), "white")),
    }  # fmt: skip
    payload = txt2img(steps=1, alwayson_scripts={"controlnet": {"args": [unit]}})
    refused = site.start(site.submit(payload))
    assert refused.status == 400
    assert "args[0].threshold_a must be a number from 0.01 to 64, not 1024" in refused.body["message"]
