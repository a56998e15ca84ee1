"""The Generate studio in a real browser (issue 31): the live preview and Cancel, the LoRA and embedding pickers, PNG
Info and Edit settings, the inpainting canvas, the gallery, and the two-column layout with Ctrl+Enter."""

import io
import re

import pytest
from PIL import Image

from inferences.engine.request.images import png_bytes
from inferences.models import InferenceJob, JobState

from .conftest import shot
from .pages import deploy, fill_generate, log_in, submit_generate


@pytest.fixture
def studio(site, admin_user, tmp_path, page):
    """The admin logged in, with the tiny checkpoint, a LoRA and an embedding uploaded and a CPU worker serving."""
    from inferences.engine.devtools import testing

    base, checkpoint_file, workers = site
    uploads = [
        ("Stable-diffusion", checkpoint_file),
        ("Lora", testing.write_tiny_lora(tmp_path / "watercolor.safetensors")),
        ("embeddings", testing.write_tiny_embedding(tmp_path / "easy-negative.safetensors")),
    ]
    deploy(admin_user, workers, uploads, "studio")
    log_in(page, base)
    return base


def picture_at(page, url: str) -> Image.Image:
    return Image.open(io.BytesIO(page.request.get(url).body())).convert("RGB")  # the live server's signed URL


def test_the_preview_updates_while_a_job_runs_and_cancel_stops_it(studio, page):
    """31.1 and 31.4: the right column shows A1111's "Approx cheap" preview updating as the job runs (a picture of
    the latents' size), and its Cancel button stops the job at its next step."""
    fill_generate(page, studio, "a slow lighthouse", "384", "150")
    submit_generate(page, wait=False)
    page.wait_for_function("Number(document.getElementById('esd-preview').dataset.updates || 0) >= 2", timeout=60_000)
    assert page.evaluate("document.getElementById('esd-preview').naturalWidth") == 384 // 8
    shot(page, "31-studio-preview")
    page.click("#esd-cancel")
    page.wait_for_selector("#esd-output[data-state=finished]", timeout=30_000)
    assert "cancelled" in page.inner_text("#esd-status-text")
    job = InferenceJob.objects.get(prompt="a slow lighthouse")
    assert job.state == JobState.CANCELLED and job.progress_step < 150
    assert job.preview  # a cancelled job keeps its last preview: where it stopped


def test_the_pickers_insert_tags_and_the_job_applies_the_lora(studio, page):
    """31.2: the user's LoRAs and embeddings are listed, searchable; a click inserts A1111's tag at the cursor with
    the weight; the job runs with the LoRA applied (its infotext's Lora hashes)."""
    fill_generate(page, studio, "a harbour", "64", "3")
    networks = page.locator(".esd-network")
    assert networks.count() == 2
    page.click("summary:text('LoRA and embeddings')")
    page.fill("#esd-network-search", "water")
    assert page.locator(".esd-network:visible").count() == 1
    page.fill("#esd-network-weight", "0.8")
    page.click("#id_prompt")
    page.click(".esd-network[data-name=watercolor]")
    assert page.input_value("#id_prompt") == "a harbour, <lora:watercolor:0.8>"
    page.fill("#esd-network-search", "")
    page.fill("#esd-network-weight", "1")
    page.click("#id_negative_prompt")
    page.click(".esd-network[data-name=easy-negative]")
    assert page.input_value("#id_negative_prompt") == "easy-negative"
    shot(page, "32-studio-pickers")
    submit_generate(page)
    assert page.locator("#esd-status-text", has_text="succeed").is_visible()
    infotext = page.inner_text("pre.esd-infotext")
    assert "<lora:watercolor:0.8>" in infotext and 'Lora hashes: "watercolor: ' in infotext
    job = InferenceJob.objects.get(prompt__startswith="a harbour")
    assert sorted(job.used_models) == ["Lora", "Stable-diffusion", "embeddings"]


def test_png_info_and_edit_settings_fill_the_form(studio, page, tmp_path):
    """31.3: a PNG with A1111 `parameters` dropped on Generate fills the form (A1111's PNG Info → txt2img), listing
    the fields it could not map; a job page's Edit settings opens Generate filled from that job."""
    text = (
        "a castle on a hill\nNegative prompt: blurry\nSteps: 7, Sampler: DPM++ 2M, Schedule type: Karras, "
        "CFG scale: 6.5, Seed: 4321, Size: 64x128, Model hash: 0123456789, Model: tiny-sd1, "
        "Denoising strength: 0.45, Face restoration: CodeFormer, Hires upscale: 2, Hires steps: 3, "
        "Hires upscaler: Lanczos, Version: v1.10.1"
    )
    dropped = tmp_path / "from-a1111.png"
    dropped.write_bytes(png_bytes(Image.new("RGB", (8, 8)), text))
    page.goto(f"{studio}/admin/inferences/inferencejob/generate/")
    page.set_input_files("#esd-png-info", str(dropped))
    page.wait_for_selector("#esd-png-info-report:not([hidden])")
    expected = {
        "#id_prompt": "a castle on a hill", "#id_negative_prompt": "blurry", "#id_steps": "7",
        "#id_sampler": "DPM++ 2M", "#id_cfg_scale": "6.5", "#id_seed": "4321", "#id_width": "64",
        "#id_height": "128", "#id_checkpoint": "tiny-sd1.safetensors", "#id_denoising_strength": "0.45",
        "#id_hr_scale": "2", "#id_hr_second_pass_steps": "3", "#id_hr_upscaler": "Lanczos",
    }  # fmt: skip
    assert {selector: page.input_value(selector) for selector in expected} == expected
    assert page.is_checked("#id_enable_hr")  # Karras is DPM++ 2M's own schedule: A1111 picks "DPM++ 2M" too
    assert "Face restoration: CodeFormer" in page.inner_text("#esd-png-info-report")
    shot(page, "33-studio-png-info")

    # a picture without parameters gets a reason, not a half-filled form
    bare = tmp_path / "bare.png"
    Image.new("RGB", (8, 8)).save(bare)
    page.set_input_files("#esd-png-info", str(bare))
    page.wait_for_selector("#esd-png-info-report:text('carries no generation parameters')")

    fill_generate(page, studio, "a quiet street", "64", "2")
    page.fill("#id_cfg_scale", "5.5")
    submit_generate(page)
    page.click("#esd-job-link")
    page.click("text=Edit settings")
    page.wait_for_url(re.compile(r".*/generate/\?from="))
    assert page.input_value("#id_prompt") == "a quiet street" and page.input_value("#id_cfg_scale") == "5.5"


def test_the_canvas_mask_bounds_the_inpainted_region(studio, page, tmp_path):
    """31.5: on img2img a brush paints the mask over the init picture; the job inpaints only the painted part (the
    picture outside it is the init picture's, to the pixel, with mask blur 0)."""
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), (200, 60, 60)).save(init)
    fill_generate(page, studio, "a blue door", "64", "4")
    page.select_option("#id_task", "img2img")
    page.set_input_files("#id_init_image", str(init))
    page.wait_for_selector("#esd-canvas:not([hidden])")
    page.fill("#id_denoising_strength", "1")
    page.select_option("#id_inpainting_fill", "2")  # latent noise: the painted part surely changes
    page.fill("#id_mask_blur", "0")
    box = page.locator("#esd-mask-canvas").bounding_box()
    scale = box["width"] / 64  # the canvas is shown larger than the picture; the brush is in the pixels one sees
    assert scale > 2
    page.locator("#esd-brush").fill(str(round(16 * scale)))  # 16 of the picture's pixels
    page.mouse.move(box["x"] + 8 * scale, box["y"] + 1)
    page.mouse.down()
    page.mouse.move(box["x"] + 8 * scale, box["y"] + box["height"] - 1, steps=8)
    page.mouse.up()
    shot(page, "34-studio-canvas")
    submit_generate(page)
    assert page.locator("#esd-status-text", has_text="succeed").is_visible()
    result = picture_at(page, page.get_attribute("img.esd-image", "src"))
    pixels = result.load()
    outside = {pixels[x, y] for x in range(40, 64) for y in range(64)}
    assert outside == {(200, 60, 60)}
    inside = [pixels[x, y] for x in range(2, 12) for y in range(4, 60)]
    assert sum(pixel != (200, 60, 60) for pixel in inside) > len(inside) // 2
    job = InferenceJob.objects.get(prompt="a blue door")
    assert job.task_type == "img2img"


def test_the_gallery_lists_pictures_newest_first_and_filters(studio, page, monkeypatch):
    """31.6: the gallery pages the viewer's pictures newest first, each linking to its job, filtered by sampler,
    model and date."""
    from inferences.admin import InferenceJobAdmin

    monkeypatch.setattr(InferenceJobAdmin, "gallery_page", 2)
    for prompt, sampler in (("first", "Euler"), ("second", "DPM++ 2M"), ("third", "Euler")):
        fill_generate(page, studio, prompt, "64", "2")
        page.select_option("#id_sampler", sampler)
        submit_generate(page)
    page.goto(f"{studio}/admin/inferences/inferencejob/gallery/")
    tiles = page.locator(".esd-tile img")
    assert [tiles.nth(i).get_attribute("alt") for i in range(tiles.count())] == ["third", "second"]
    shot(page, "35-gallery")
    page.click("#gallery-next")
    assert [page.locator(".esd-tile img").nth(0).get_attribute("alt")] == ["first"]
    page.goto(f"{studio}/admin/inferences/inferencejob/gallery/")
    page.select_option("#id_sampler", "Euler")
    page.click("#gallery-filters input[type=submit]")
    alts = page.locator(".esd-tile img").evaluate_all("images => images.map(image => image.alt)")
    assert alts == ["third", "first"]
    page.locator(".esd-tile a").first.click()
    page.wait_for_url(re.compile(r".*/admin/inferences/inferencejob/[0-9a-f-]+/change/"))
    assert page.locator(".field-prompt", has_text="third").count() == 1


def test_the_studio_is_two_columns_and_ctrl_enter_generates(studio, page):
    """31.7: at 1280x800 the settings sit left of the preview and pictures, the prompt and Generate on the first
    screen; on a narrow screen the output follows the settings; Ctrl+Enter in the prompt generates."""
    fill_generate(page, studio, "a windmill", "64", "2")
    settings_box = page.locator("#generate-form").bounding_box()
    output_box = page.locator("#esd-output").bounding_box()
    assert output_box["x"] >= settings_box["x"] + settings_box["width"] - 1
    assert page.locator("#generate-submit").bounding_box()["y"] < 800
    page.focus("#id_prompt")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#esd-output[data-state=finished]", timeout=60_000)
    assert page.locator("img.esd-image").count() == 1
    shot(page, "36-studio")
    page.emulate_media(color_scheme="dark")  # the admin's own variables: the studio follows its dark mode
    assert page.evaluate("getComputedStyle(document.querySelector('#esd-output')).color") != "rgb(51, 51, 51)"
    shot(page, "37-studio-dark")
    page.set_viewport_size({"width": 480, "height": 900})
    narrow_settings = page.locator("#generate-form").bounding_box()
    narrow_output = page.locator("#esd-output").bounding_box()
    assert narrow_output["y"] >= narrow_settings["y"] + narrow_settings["height"] - 1
    assert narrow_settings["width"] <= 480
