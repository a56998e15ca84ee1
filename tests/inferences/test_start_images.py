"""`start` in the web process: a job's images are checked by their headers against one budget for the whole job."""

from PIL import Image

from inferences.models import InferenceJob

from .conftest import png_b64, txt2img
from .jobs import serve


def test_start_refuses_a_job_whose_images_together_are_too_large(site):
    serve(site, "Async", queues={"endpoint.elsewhere"})  # the endpoint is in service; nothing runs
    big = png_b64(Image.new("RGB", (4096, 4096), "white"))
    job_id = site.submit(txt2img(init_images=[big] * 16, denoising_strength=0.5), task="img2img")
    refused = site.start(job_id)
    assert refused.status == 400
    assert "the job's 16 images hold 268435456 pixels in all; at most 50331648" in refused.body["message"]
    job = InferenceJob.objects.get(pk=job_id)
    assert job.status == "created" and "268435456 pixels" in job.error
