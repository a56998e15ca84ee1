"""The infotext, field for field and in order, as A1111's create_infotext writes it (issue 30.17), but `Version`.

Each expected text was worked out by hand from A1111 v1.10.1 (kklouzal/stable-diffusion-webui, tag v1.10.1):
`modules/processing.py` create_infotext (its dict literal's order; `**p.extra_generation_params` after it, a key of
both keeping the literal's place; `quote` from `modules/infotext_utils.py`: JSON for a value holding `,` `:` or a
newline; the whole text `.strip()`ed), what fills extra_generation_params and when: the ControlNet extension's
`process` (scripts/infotext.py write_infotext, before `p.init`), txt2img `init` (Denoising strength, Hires
checkpoint, Hires sampler when `hr_sampler_name` differs, Hires prompt/negative prompt when they differ, the Hires
schedule type placeholder, then calculate_target_resolution's Hires upscale / Hires resize, Hires steps when set,
Hires upscaler when sent), img2img `init` (Mask mode, Mask blur when x = y, Masked content for fills 0/2/3), Lora
hashes (extra networks' activate, after `init`), then the sampler's `initialize` (Eta when it differs from 1.0 for
k-diffusion samplers with an `eta` argument, Eta DDIM from 0.0 for DDIM) and `get_sigmas` (Schedule type: the label
of the schedule run, else the payload's `p.scheduler`, "Automatic" when none was sent; get_sampler_and_scheduler
strips a sampler name's schedule suffix). ENSD: `is_sampler_using_eta_noise_seed_delta` (the `uses_ensd` samplers,
unless eta is 0). RNG: `CPU`, the source the engine's noise follows (A1111 writes it for any source but GPU).
"""

from types import SimpleNamespace

import pytest
from PIL import Image

from inferences.engine.infotext import infotext, quote
from inferences.engine.request.limits import Limits
from inferences.engine.request.payload import parse_request

from .conftest import png_b64, red_disc

MODEL = SimpleNamespace(checkpoint=SimpleNamespace(stem="tiny", short_hash="0123456789"))
OTHER = SimpleNamespace(checkpoint=SimpleNamespace(stem="other", short_hash="abcdef0123"))
VAE = SimpleNamespace(stem="kl-f8", short_hash="feedbeef00")
HEAD = "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.0, Seed: 1234, Size: 512x512, "
MODEL_FIELDS = "Model hash: 0123456789, Model: tiny"
TAIL = "RNG: CPU, Version: esd-server"


def base(**overrides: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "prompt": "a cat",
        "seed": 1234,
        "sampler_name": "Euler a",
        "steps": 20,
        "cfg_scale": 7,
        "width": 512,
        "height": 512,
    }
    return payload | overrides


def img2img(**overrides: object) -> dict[str, object]:
    picture = png_b64(red_disc((512, 512)))
    return base(init_images=[picture], denoising_strength=0.6, inpaint_full_res=False) | overrides


def masked(**overrides: object) -> dict[str, object]:
    return img2img(mask=png_b64(red_disc((512, 512)).convert("L"))) | overrides


def hires(**overrides: object) -> dict[str, object]:
    return base(enable_hr=True, hr_scale=2, denoising_strength=0.5) | overrides


CASES = [
    ("plain Euler a", "txt2img", base(), {}, f"a cat\n{HEAD}{MODEL_FIELDS}, {TAIL}"),
    (
        "DPM++ 2M runs its own Karras",
        "txt2img",
        base(sampler_name="DPM++ 2M"),
        {},
        f"a cat\n{HEAD.replace('Euler a, Schedule type: Automatic', 'DPM++ 2M, Schedule type: Karras')}"
        f"{MODEL_FIELDS}, {TAIL}",
    ),
    (
        "a schedule suffix is stripped from the sampler's name",
        "txt2img",
        base(sampler_name="DPM++ 2M SDE Karras"),
        {},
        f"a cat\n{HEAD.replace('Euler a, Schedule type: Automatic', 'DPM++ 2M SDE, Schedule type: Karras')}"
        f"{MODEL_FIELDS}, {TAIL}",
    ),
    (
        "a schedule type sent",
        "txt2img",
        base(sampler_name="Euler", scheduler="Exponential"),
        {},
        f"a cat\n{HEAD.replace('Euler a, Schedule type: Automatic', 'Euler, Schedule type: Exponential')}"
        f"{MODEL_FIELDS}, {TAIL}",
    ),
    (
        "DDIM's eta is Eta DDIM",
        "txt2img",
        base(sampler_name="DDIM", eta=0.5),
        {},
        f"a cat\n{HEAD.replace('Euler a', 'DDIM')}{MODEL_FIELDS}, {TAIL.replace('RNG: CPU', 'RNG: CPU, Eta DDIM: 0.5')}",
    ),
    (
        "an ancestral sampler's eta and ENSD",
        "txt2img",
        base(eta=0.5, override_settings={"eta_noise_seed_delta": 31337}),
        {},
        f"a cat\n{HEAD}{MODEL_FIELDS}, ENSD: 31337, RNG: CPU, Eta: 0.5, Version: esd-server",
    ),
    (
        "eta 0: no ENSD (no noise drawn)",
        "txt2img",
        base(eta=0, override_settings={"eta_noise_seed_delta": 31337}),
        {},
        f"a cat\n{HEAD}{MODEL_FIELDS}, RNG: CPU, Eta: 0.0, Version: esd-server",
    ),
    (
        "Euler draws no noise: no ENSD",
        "txt2img",
        base(sampler_name="Euler", override_settings={"eta_noise_seed_delta": 31337}),
        {},
        f"a cat\n{HEAD.replace('Euler a', 'Euler')}{MODEL_FIELDS}, {TAIL}",
    ),
    (
        "prompts with commas, a clip skip, a VAE",
        "txt2img",
        base(prompt="a cat, photo", negative_prompt="ugly, blurry", override_settings={"CLIP_stop_at_last_layers": 2}),
        {"vae": VAE},
        f"a cat, photo\nNegative prompt: ugly, blurry\n{HEAD}{MODEL_FIELDS}, VAE hash: feedbeef00, VAE: kl-f8, "
        f"Clip skip: 2, {TAIL}",
    ),
    (
        "variation seed and seed resize",
        "txt2img",
        base(subseed=99, subseed_strength=0.3, seed_resize_from_w=256, seed_resize_from_h=256),
        {"subseed": 99},
        f"a cat\n{HEAD}{MODEL_FIELDS}, Variation seed: 99, Variation seed strength: 0.3, Seed resize from: 256x256, "
        f"{TAIL}",
    ),
    (
        "a batch writes no Batch size or Batch pos",
        "txt2img",
        base(batch_size=2),
        {"seed": 1235},  # the second image's
        f"a cat\n{HEAD.replace('1234', '1235')}{MODEL_FIELDS}, {TAIL}",
    ),
    (
        "hires: upscale, no upscaler sent",
        "txt2img",
        hires(),
        {},
        f"a cat\n{HEAD}{MODEL_FIELDS}, Denoising strength: 0.5, RNG: CPU, Hires upscale: 2.0, Version: esd-server",
    ),
    (
        "hires: resize, steps and the upscaler sent",
        "txt2img",
        hires(hr_resize_x=1024, hr_resize_y=768, hr_second_pass_steps=10, hr_upscaler="Latent"),
        {},
        f"a cat\n{HEAD}{MODEL_FIELDS}, Denoising strength: 0.5, RNG: CPU, Hires resize: 1024x768, Hires steps: 10, "
        "Hires upscaler: Latent, Version: esd-server",
    ),
    (
        "hires: another sampler and its schedule",
        "txt2img",
        hires(hr_sampler_name="DPM++ 2M"),
        {},
        f"a cat\n{HEAD}{MODEL_FIELDS}, Denoising strength: 0.5, RNG: CPU, Hires sampler: DPM++ 2M, "
        "Hires schedule type: Karras, Hires upscale: 2.0, Version: esd-server",
    ),
    (
        "hires: the same schedule as the first pass is not repeated",
        "txt2img",
        hires(sampler_name="DPM++ 2M", hr_sampler_name="DPM++ 2S a"),
        {},
        f"a cat\n{HEAD.replace('Euler a, Schedule type: Automatic', 'DPM++ 2M, Schedule type: Karras')}"
        f"{MODEL_FIELDS}, Denoising strength: 0.5, RNG: CPU, Hires sampler: DPM++ 2S a, Hires upscale: 2.0, "
        "Version: esd-server",
    ),
    (
        "hires: prompts, quoted as JSON",
        "txt2img",
        hires(hr_prompt='a dog, "café": yes', hr_negative_prompt="cat"),
        {},
        f"a cat\n{HEAD}{MODEL_FIELDS}, Denoising strength: 0.5, RNG: CPU, "
        'Hires prompt: "a dog, \\"café\\": yes", Hires negative prompt: cat, Hires upscale: 2.0, Version: esd-server',
    ),
    (
        "hires: checkpoint, ControlNet first, then the hires fields, Lora hashes, Eta",
        "txt2img",
        hires(eta=0.8),
        {
            "hires_model": OTHER,
            "control_notes": ["ControlNet 0: Module: canny, Model: cn"],
            "lora_hashes": ["style: 1a2b3c4d5e6f"],
        },
        f"a cat\n{HEAD}{MODEL_FIELDS}, Denoising strength: 0.5, RNG: CPU, "
        'ControlNet 0: "Module: canny, Model: cn", Hires checkpoint: other [abcdef0123], Hires upscale: 2.0, '
        'Lora hashes: "style: 1a2b3c4d5e6f", Eta: 0.8, Version: esd-server',
    ),
    (
        "img2img: its denoising strength",
        "img2img",
        img2img(),
        {},
        f"a cat\n{HEAD}{MODEL_FIELDS}, Denoising strength: 0.6, {TAIL}",
    ),
    (
        "inpainting: blur and fill",
        "img2img",
        masked(),
        {},
        f"a cat\n{HEAD}{MODEL_FIELDS}, Denoising strength: 0.6, RNG: CPU, Mask blur: 4, Masked content: fill, "
        "Version: esd-server",
    ),
    (
        "inpainting: inverted, original content",
        "img2img",
        masked(inpainting_mask_invert=1, inpainting_fill=1, mask_blur=8),
        {},
        f"a cat\n{HEAD}{MODEL_FIELDS}, Denoising strength: 0.6, RNG: CPU, Mask mode: Inpaint not masked, "
        "Mask blur: 8, Version: esd-server",
    ),
    (
        "inpainting: uneven blur has no single number; latent noise",
        "img2img",
        masked(mask_blur_x=4, mask_blur_y=8, inpainting_fill=2),
        {},
        f"a cat\n{HEAD}{MODEL_FIELDS}, Denoising strength: 0.6, RNG: CPU, Masked content: latent noise, "
        "Version: esd-server",
    ),
    (
        "inpainting: only masked (A1111's API default), padded",
        "img2img",
        masked(inpaint_full_res=True, inpaint_full_res_padding=32),
        {},
        f"a cat\n{HEAD}{MODEL_FIELDS}, Denoising strength: 0.6, RNG: CPU, Mask blur: 4, Inpaint area: Only masked, "
        "Masked area padding: 32, Masked content: fill, Version: esd-server",
    ),
    (
        "inpainting: only masked with nothing painted runs as img2img: no area, no content",
        "img2img",
        masked(inpaint_full_res=1, mask=png_b64(Image.new("L", (512, 512)))),
        {},
        f"a cat\n{HEAD}{MODEL_FIELDS}, Denoising strength: 0.6, RNG: CPU, Mask blur: 4, Version: esd-server",
    ),
    (
        "the whole text is stripped",
        "txt2img",
        base(prompt="  a cat  "),
        {},
        f"a cat  \n{HEAD}{MODEL_FIELDS}, {TAIL}",
    ),
]


@pytest.mark.parametrize(("task", "payload", "context", "expected"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])  # fmt: skip
def test_the_infotext_is_a1111s(task, payload, context, expected):
    request = parse_request(task, payload, Limits())
    text = infotext(
        request,
        context.get("model", MODEL),
        context.get("vae"),
        context.get("seed", 1234),
        context.get("lora_hashes", []),
        subseed=context.get("subseed"),
        control_notes=context.get("control_notes"),
        hires_model=context.get("hires_model"),
    )
    assert text == expected


def test_quote_is_a1111s():
    """infotext_utils.quote: untouched without `,` `:` or a newline; else json.dumps(ensure_ascii=False)."""
    assert quote("Euler a") == "Euler a"
    assert quote(7.0) == "7.0"
    assert quote("a, b") == '"a, b"'
    assert quote("line\nbreak") == '"line\\nbreak"'
    assert quote('say "x": ok \\ café') == '"say \\"x\\": ok \\\\ café"'
