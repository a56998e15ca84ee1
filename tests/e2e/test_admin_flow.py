"""The admin in a real browser: log in, create a role and a user, upload the tiny checkpoint, create an endpoint,
generate an image on the Generate page and see it, cancel a job."""

import re

from endpoints.models import Endpoint
from endpoints.runtime import EndpointWorker
from inferences.models import InferenceJob
from tests.conftest import wait_for

from .conftest import shot
from .pages import deploy, fill_generate, log_in, submit_generate


def test_admin_end_to_end(page, site):
    base, checkpoint_file, workers = site
    log_in(page, base)
    shot(page, "01-admin-index")

    # a role with permission strings ticked as checkboxes
    page.goto(f"{base}/admin/accounts/role/add/")
    page.fill("#id_name", "artists")
    for permission in ("inference:create", "inference:list", "checkpoint:list"):
        page.check(f"input[name=permissions][value='{permission}']")
    shot(page, "02-role-add")
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r".*/admin/accounts/role/$"))
    assert page.locator("text=artists").first.is_visible()

    # a user in that role
    page.goto(f"{base}/admin/accounts/user/add/")
    page.fill("#id_username", "bob")
    page.fill("#id_password1", "a-long-password-42")
    page.fill("#id_password2", "a-long-password-42")
    # Django's two-box role picker: double-click moves a role to "Chosen roles"
    page.dblclick("#id_roles_from option:text-is('artists')")
    assert page.locator("#id_roles_to option:text-is('artists')").count() == 1
    shot(page, "03-user-add")
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r".*/admin/accounts/user/.+/change/.*"))

    # the tiny checkpoint, uploaded through the admin
    page.goto(f"{base}/admin/checkpoints/checkpoint/add/")
    page.select_option("#id_type", "Stable-diffusion")
    page.set_input_files("#id_file", str(checkpoint_file))
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r".*/admin/checkpoints/checkpoint/.*"))
    page.goto(f"{base}/admin/checkpoints/checkpoint/")
    shot(page, "04-checkpoints")
    row = page.locator("#result_list tbody tr", has_text="tiny-sd1.safetensors")
    assert row.count() == 1 and row.locator("td.field-status").inner_text() == "Active"

    # an endpoint for the IT Operator role, and a worker serving it
    page.goto(f"{base}/admin/endpoints/endpoint/add/")
    page.fill("#id_suffix", "browser")
    page.select_option("#id_endpoint_type", "Async")
    page.fill("#id_instance_type", "cpu")
    page.fill("#id_initial_instance_count", "1")
    page.locator("#id_roles").select_option(label="IT Operator")
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r".*/admin/endpoints/endpoint/.*"))
    endpoint = Endpoint.objects.get(name="esd-async-browser")
    worker = EndpointWorker(endpoint, device="cpu")
    worker.start()
    workers.append(worker)
    page.goto(f"{base}/admin/endpoints/endpoint/")
    wait_for(lambda: page.reload() or page.locator("text=InService").count() > 0, timeout=15)
    shot(page, "05-endpoints")

    # generate on the Generate page; the job page shows progress and then the images
    fill_generate(page, base, "a photo of a cat", "128", "6")
    page.fill("#id_batch_size", "2")
    page.fill("#id_seed", "1234")
    shot(page, "06-generate")
    submit_generate(page)
    images = page.locator("img.esd-image")
    images.first.wait_for(state="visible", timeout=60_000)
    assert images.count() == 2
    page.wait_for_function("[...document.querySelectorAll('img.esd-image')].every(i => i.complete)")
    sizes = page.evaluate("[...document.querySelectorAll('img.esd-image')].map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [[128, 128], [128, 128]]
    assert page.locator("#esd-status-text", has_text="succeed").is_visible()
    shot(page, "07-job-done")
    page.click("#esd-job-link")  # the job's own page shows the same pictures
    page.wait_for_url(re.compile(r".*/admin/inferences/inferencejob/[0-9a-f-]+/change/"))
    assert page.locator("img.esd-image").count() == 2 and page.locator("text=succeed").first.is_visible()

    # a long job, cancelled from the list while it runs
    fill_generate(page, base, "a very slow cat", "384", "150")
    submit_generate(page, wait=False)
    slow = InferenceJob.objects.get(prompt="a very slow cat")
    wait_for(lambda: InferenceJob.objects.get(pk=slow.pk).progress_step > 0, timeout=60)
    page.goto(f"{base}/admin/inferences/inferencejob/")
    shot(page, "08-jobs-running")
    page.check(f"input[name=_selected_action][value='{slow.pk}']")
    page.select_option("select[name=action]", "cancel_jobs")
    page.click("button[name=index]")
    page.wait_for_selector("text=job(s) cancelled")
    wait_for(lambda: InferenceJob.objects.get(pk=slow.pk).status == "failed", timeout=30)
    page.reload()
    assert page.locator("td.field-status_label", has_text="cancelled").count() == 1
    assert page.locator("td.field-status_label", has_text="succeed").count() == 1
    shot(page, "09-jobs-list")
    assert InferenceJob.objects.get(pk=slow.pk).progress_step < 150

    # the index guides: a Generate entry, the endpoint with its worker, the queue, the latest images
    page.goto(f"{base}/admin/")
    assert page.locator("a.esd-generate", has_text="Generate an image").is_visible()
    assert page.locator("#esd-dashboard td", has_text="esd-async-browser").count() == 1
    assert page.locator(".esd-gallery img").count() >= 1
    shot(page, "10-index-dashboard")
    page.locator(".esd-gallery a").first.click()
    page.wait_for_url(re.compile(r".*/admin/inferences/inferencejob/[0-9a-f-]+/change/"))
    assert page.locator("table.esd-table").count() >= 2  # timings and parameters as tables
    shot(page, "11-job-tables")


def test_generate_with_a_controlnet_unit_and_then_the_hires_fix(page, site, admin_user, tmp_path):
    """The Generate page's ControlNet unit (model, image, preprocessor) and hires-fix toggle: the job page shows
    the picture and, beside it, the unit's detected map; the hires fix doubles the picture's size."""
    from PIL import Image, ImageDraw

    from inferences.engine.devtools import testing

    base, checkpoint_file, workers = site
    controlnet_file = testing.write_tiny_controlnet(tmp_path / "control_tiny_canny.safetensors")
    deploy(admin_user, workers, [("Stable-diffusion", checkpoint_file), ("ControlNet", controlnet_file)], "browser")
    guide = tmp_path / "guide.png"
    picture = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(picture).ellipse((20, 20, 76, 76), outline="black", width=4)
    picture.save(guide)
    log_in(page, base)

    fill_generate(page, base, "a ring", "64", "4")
    page.click("summary:text('ControlNet')")  # a folded section of the studio
    page.select_option("#id_controlnet_model", "control_tiny_canny.safetensors")
    page.set_input_files("#id_controlnet_image", str(guide))
    page.select_option("#id_controlnet_module", "canny")
    shot(page, "20-generate-controlnet")
    submit_generate(page)
    page.locator("img.esd-image").first.wait_for(state="visible", timeout=60_000)
    assert page.locator("img.esd-image").count() == 1
    detected = page.locator("img.esd-detected-map")
    assert detected.count() == 1 and page.locator("figcaption", has_text="ControlNet detected map").count() == 1
    assert page.locator("pre.esd-infotext", has_text='ControlNet 0: "Module: canny, Model: control_tiny_canny').count()
    shot(page, "21-job-controlnet")

    fill_generate(page, base, "a larger ring", "64", "4")
    page.click("summary:text('Hires fix')")
    page.check("#id_enable_hr")
    page.fill("#id_hr_scale", "2")
    page.select_option("#id_hr_upscaler", "Lanczos")
    page.fill("#id_hr_second_pass_steps", "2")
    page.fill("#id_denoising_strength", "0.5")
    submit_generate(page)
    image = page.locator("img.esd-image").first
    image.wait_for(state="visible", timeout=60_000)
    page.wait_for_function("document.querySelector('img.esd-image').naturalWidth > 0")
    assert page.evaluate(
        "[document.querySelector('img.esd-image').naturalWidth, document.querySelector('img.esd-image').naturalHeight]"
    ) == [128, 128]
    assert page.locator(
        "pre.esd-infotext", has_text="Hires upscale: 2.0, Hires steps: 2, Hires upscaler: Lanczos"
    ).count()
    shot(page, "22-job-hires")
