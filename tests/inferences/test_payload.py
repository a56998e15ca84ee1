"""Payload validation: every refusal is an EngineError whose message names the key and what is accepted.

These run without torch: the web process validates payloads with the same code.
"""

import base64
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inferences.engine.errors import EngineError
from inferences.engine.request.limits import Limits
from inferences.engine.request.payload import Generation, Removal, Upscale, load_payload, parse_request
from inferences.engine.request.samplers import SAMPLERS, resolve_sampler
from tests.helpers import bomb_png

from .conftest import png_b64, red_disc, txt2img

LIMITS = Limits()


def img2img(**overrides: object) -> dict[str, object]:
    payload = txt2img(init_images=[png_b64(red_disc())], denoising_strength=0.75, resize_mode=0)
    payload.update(overrides)
    return payload


def test_the_webui_payload_parses_with_nothing_reported() -> None:
    request = parse_request("txt2img", txt2img(), LIMITS)
    assert isinstance(request, Generation)
    assert (request.width, request.height, request.steps, request.sampler) == (64, 64, 3, "Euler a")
    assert request.seed == 1234
    assert request.ignored == []


def test_infinity_in_the_json_is_accepted() -> None:
    data = load_payload(b'{"prompt": "x", "s_tmax": Infinity, "width": 64, "height": 64}')
    assert parse_request("txt2img", data, LIMITS).ignored == []


@pytest.mark.parametrize(
    ("overrides", "ignored"),
    [
        ({"enable_hr": True, "hr_additional_modules": ["Use same choices"]}, []),  # honoured
        ({"restore_faces": True}, ["restore_faces"]),
        ({"tiling": True}, ["tiling"]),
        ({"s_noise": 0.9}, ["s_noise"]),
        ({"styles": ["cinematic"]}, ["styles"]),
        ({"script_name": "x/y/z plot"}, ["script_name"]),
        ({"s_churn": 0.5}, ["s_churn"]),
        ({"refiner_checkpoint": "sdxl_refiner"}, ["refiner_checkpoint"]),
        # the GPU source is honoured (a CPU worker reports at run time that it drew on the CPU); NV is not drawn
        ({"override_settings": {"sd_vae": "Automatic", "eta_noise_seed_delta": 31337, "randn_source": "GPU"}}, []),
        (
            {"override_settings": {"randn_source": "NV"}},
            [
                "override_settings.randn_source NV (A1111's emulation of NVIDIA's generator is not drawn here: noise is "
                "drawn as its GPU source draws it)"
            ],
        ),
        # a unit without a model does nothing in the extension either
        ({"alwayson_scripts": {"controlnet": {"args": [{"enabled": True, "module": "canny"}]}}}, []),
        ({"alwayson_scripts": {"refiner": {"args": [True, "sdxl_refiner", 0.8]}}}, ["alwayson_scripts.refiner"]),
        # older ControlNet clients send units without `enabled`, meaning on
        (
            {
                "alwayson_scripts": {
                    "controlnet": {
                        "args": [
                            {
                                "module": "canny",
                                "model": "cn",
                                "image": png_b64(red_disc()),
                                "advanced_weighting": [0.5] * 13,
                            }
                        ]
                    }
                }
            },
            ["alwayson_scripts.controlnet.args[0].advanced_weighting"],
        ),
        ({"alwayson_scripts": {"controlnet": {"args": [{"enabled": False, "module": "canny"}]}}}, []),
        ({"alwayson_scripts": {"adetailer": {"args": [False, False, {"ad_model": "face_yolov8n.pt"}]}}}, []),
        ({"my_extension_key": 1}, ["my_extension_key"]),
        ({"prompt": "a <hypernet:anime:0.7> cat"}, ["<hypernet:anime> (only LoRA networks are supported)"]),
    ],
)
def test_keys_the_engine_does_not_honour_are_reported(overrides: dict[str, object], ignored: list[str]) -> None:
    request = parse_request("txt2img", txt2img(**overrides), LIMITS)
    assert sorted(request.ignored) == sorted(ignored)


def test_eta_is_honoured_where_it_scales_noise_and_reported_otherwise() -> None:
    for sampler in ("DDIM", "Euler a", "DPM++ SDE Karras", "DPM++ 2M SDE", "DPM adaptive"):
        assert parse_request("txt2img", txt2img(sampler_name=sampler, eta=0.3), LIMITS).ignored == [], sampler
    assert parse_request("txt2img", txt2img(sampler_name="Euler", eta=0.3), LIMITS).ignored == [
        "eta (Euler adds no noise for it to scale)"
    ]


def test_eta_noise_seed_delta_is_honoured() -> None:
    request = parse_request("txt2img", txt2img(override_settings={"eta_noise_seed_delta": 31337}), LIMITS)
    assert isinstance(request, Generation) and request.noise_seed_delta == 31337 and request.ignored == []


@pytest.mark.parametrize(
    ("task", "payload", "message"),
    [
        ("txt2img", txt2img(width=513), "width must be a multiple of 8"),
        ("txt2img", txt2img(width=-64), "width must be an integer from 64 to 2048"),
        ("txt2img", txt2img(height=4096), "height must be an integer from 64 to 2048"),
        ("txt2img", txt2img(width="512"), "width must be an integer"),
        ("txt2img", txt2img(steps=0), "steps must be an integer from 1 to 150"),
        ("txt2img", txt2img(steps=10_000), "steps must be an integer from 1 to 150"),
        ("txt2img", txt2img(steps=True), "steps must be an integer"),
        ("txt2img", txt2img(cfg_scale=-1), "cfg_scale must be a number from 0 to 30"),
        ("txt2img", txt2img(cfg_scale=float("nan")), "cfg_scale must be a number"),
        ("txt2img", txt2img(seed=2**40), "seed must be an integer from -1"),
        ("txt2img", txt2img(seed=-5), "seed must be an integer from -1"),
        ("txt2img", txt2img(batch_size=9), "batch_size must be an integer from 1 to 8"),
        ("txt2img", txt2img(batch_size=8, n_iter=3), "batch_size x n_iter is 24 images; at most 16"),
        ("txt2img", txt2img(prompt="x" * 1_000_000), "prompt is 1000000 characters long; at most 20000"),
        ("txt2img", txt2img(negative_prompt=["a"]), "negative_prompt must be a string"),
        ("txt2img", txt2img(sampler_name="Euler z"), "sampler_name 'Euler z' is not supported; use one of: Euler a"),
        ("txt2img", txt2img(scheduler="Turbo"), "scheduler 'Turbo' is not supported; use one of: Automatic, Uniform"),
        ("txt2img", txt2img(override_settings=[]), "override_settings must be an object"),
        ("txt2img", txt2img(override_settings={"CLIP_stop_at_last_layers": 40}), "CLIP_stop_at_last_layers must be"),
        ("txt2img", txt2img(override_settings={"sd_vae": 3}), "override_settings.sd_vae must be a VAE's file name"),
        ("img2img", img2img(init_images=[]), "init_images must be a list of one or more base64 images"),
        ("img2img", img2img(init_images="abc"), "init_images must be a list"),
        ("img2img", img2img(init_images=[17]), "init_images[0] must be a base64-encoded image"),
        ("img2img", img2img(init_images=["%%%not base64%%%"]), "init_images[0] is not valid base64"),
        (
            "img2img",
            img2img(init_images=[base64.b64encode(b"hello world").decode()]),
            "is not an image this server reads",
        ),
        ("img2img", img2img(init_images=[bomb_png(100_000, 100_000)]), "init_images[0] has more than 16777216 pixels"),
        (
            "img2img",
            img2img(init_images=[bomb_png(5000, 4000)]),
            "init_images[0] is 5000x4000 pixels; at most 16777216",
        ),
        ("img2img", img2img(init_images=[png_b64(red_disc())[:200]]), "init_images[0] is a damaged or truncated image"),
        ("img2img", img2img(denoising_strength=1.5), "denoising_strength must be a number from 0 to 1"),
        ("img2img", img2img(resize_mode=7), "resize_mode must be an integer from 0 to 3"),
        ("img2img", img2img(mask="nope"), "mask is not an image this server reads"),
        ("img2img", img2img(inpainting_fill=9), "inpainting_fill must be an integer from 0 to 3"),
        ("img2img", img2img(mask_blur=500), "mask_blur must be an integer from 0 to 64"),
        ("rembg", {"input_image": png_b64(red_disc()), "model": "../../etc/passwd"}, "model must be one of u2net"),
        ("rembg", {"model": "u2netp"}, "input_image must be a base64-encoded image"),
        ("extra-single-image", {"image": png_b64(red_disc()), "upscaler_1": 4}, "upscaler_1 must be a string"),
        (
            "extra-single-image",
            {"image": png_b64(red_disc()), "upscaling_resize": 8, "resize_mode": 0, "upscaling_resize_w": 1},
            None,
        ),
        ("controlnet", {}, "task must be one of txt2img, img2img, rembg, extra-single-image"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(task: str, payload: dict[str, object], message: str | None) -> None:
    if message is None:  # accepted: a valid edge case in the same table
        assert isinstance(parse_request(task, payload, LIMITS), Upscale)
        return
    with pytest.raises(EngineError) as refused:
        parse_request(task, payload, LIMITS)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\xff\xfe", "is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON"),
    ],
)
def test_payloads_that_are_not_json_objects(raw: bytes, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        load_payload(raw)


def test_upscaled_result_may_not_exceed_the_pixel_cap() -> None:
    big = Image.new("RGB", (2048, 2048))
    with pytest.raises(EngineError, match="the result would be 16384x16384 pixels"):
        parse_request("extra-single-image", {"image": png_b64(big), "upscaling_resize": 8}, LIMITS)


def test_img2img_echo_leaves_the_images_out() -> None:
    request = parse_request("img2img", img2img(mask=png_b64(Image.new("L", (96, 80), 255))), LIMITS)
    assert isinstance(request, Generation)
    assert request.parameters["init_images"] is None and request.parameters["mask"] is None
    assert request.mask is not None and request.init_images[0].size == (96, 80)


def test_data_uri_images_are_accepted() -> None:
    request = parse_request(
        "rembg", {"input_image": "data:image/png;base64," + png_b64(red_disc()), "model": "u2netp"}, LIMITS
    )
    assert isinstance(request, Removal) and request.image.size == (96, 80)


def test_extra_networks_are_taken_out_of_the_prompt() -> None:
    request = parse_request("txt2img", txt2img(prompt="a cat <lora:watercolor:0.6>, <lyco:ink>"), LIMITS)
    assert isinstance(request, Generation)
    assert [(tag.kind, tag.name, tag.weight) for tag in request.networks] == [
        ("lora", "watercolor", 0.6),
        ("lora", "ink", 1.0),
    ]
    assert "<lora" not in request.text and request.prompt.endswith("<lyco:ink>")
    off = parse_request("txt2img", txt2img(prompt="a cat <lora:watercolor:0.6>", disable_extra_networks=True), LIMITS)
    assert isinstance(off, Generation) and off.networks == []


def test_sampler_names_aliases_and_schedule_types() -> None:
    assert resolve_sampler("k_euler_a") == ("Euler a", None)
    assert resolve_sampler("dpm++ 2m karras") == ("DPM++ 2M", "karras")  # a pre-1.9 name carries its schedule
    assert resolve_sampler("DPM++ 2M SDE Karras", "Exponential") == ("DPM++ 2M SDE", "karras")  # the name's wins
    assert resolve_sampler("DPM++ 2M", "Karras") == ("DPM++ 2M", "karras")
    assert resolve_sampler("Euler", "Automatic") == ("Euler", None)
    assert resolve_sampler("Euler", "SGM Uniform") == ("Euler", "sgm_uniform")
    assert resolve_sampler("DPM adaptive") == ("DPM adaptive", None)
    assert len(SAMPLERS) >= 18


def test_img2img_resize_mode_3_is_reported() -> None:
    from .conftest import png_b64, red_disc

    payload = {"prompt": "x", "init_images": [png_b64(red_disc())], "resize_mode": 3, "width": 64, "height": 64}
    request = parse_request("img2img", payload, LIMITS)
    assert request.ignored == ["resize_mode 3 (latent upscale: the image is resized as resize_mode 0 instead)"]
    assert parse_request("img2img", {**payload, "resize_mode": 2}, LIMITS).ignored == []


def test_a_jobs_images_together_have_a_pixel_budget_read_from_their_headers():
    big = png_b64(Image.new("RGB", (4096, 4096), "white"))  # 16.8 MP, a few kB compressed
    payload = txt2img(init_images=[big] * 4, batch_size=4, denoising_strength=0.5)
    with pytest.raises(EngineError, match="the job's 4 images hold 67108864 pixels in all; at most 50331648"):
        parse_request("img2img", payload, Limits())
    assert len(parse_request("img2img", {**payload, "init_images": [big] * 3}, Limits()).init_images) == 3


def test_the_web_process_checks_images_by_their_headers_and_leaves_them_compressed():
    payload = txt2img(init_images=[png_b64(red_disc())], mask=png_b64(red_disc()), denoising_strength=0.5)
    checked = parse_request("img2img", payload, Limits(load_images=False))
    assert all(image.tile for image in [*checked.init_images, checked.mask])  # nothing decoded yet
    loaded = parse_request("img2img", payload, Limits())
    assert not any(image.tile for image in [*loaded.init_images, loaded.mask])  # the worker's parse decodes
    truncated = base64.b64encode(base64.b64decode(png_b64(red_disc()))[:-40]).decode()
    parse_request("img2img", {**payload, "init_images": [truncated]}, Limits(load_images=False))  # header is fine
    with pytest.raises(EngineError, match=r"init_images\[0\] is a damaged or truncated image"):
        parse_request("img2img", {**payload, "init_images": [truncated]}, Limits())


def test_defaults_are_a1111_apis() -> None:
    """Issue 30.18. A1111's modules/processing.py: StableDiffusionProcessing `steps: int = 50`;
    StableDiffusionProcessingImg2Img `inpainting_fill: int = 0`, `mask_blur_x = mask_blur_y = 4`, and `mask_blur`, a
    property whose setter (run after them by the dataclass' __init__) sets both."""
    bare = parse_request("txt2img", {"prompt": "a cat"}, LIMITS)
    assert bare.steps == 50
    picture = {"prompt": "a cat", "init_images": [png_b64(red_disc())], "mask": png_b64(red_disc())}
    inpaint = parse_request("img2img", picture, LIMITS)
    assert (inpaint.inpainting_fill, inpaint.mask_blur_x, inpaint.mask_blur_y) == (0, 4, 4)
    both = parse_request("img2img", {**picture, "mask_blur": 9, "mask_blur_x": 2, "mask_blur_y": 3}, LIMITS)
    assert (both.mask_blur_x, both.mask_blur_y) == (9, 9)
    axes = parse_request("img2img", {**picture, "mask_blur_x": 2, "mask_blur_y": 3}, LIMITS)
    assert (axes.mask_blur_x, axes.mask_blur_y) == (2, 3)


def test_embeddings_are_found_by_their_names_token_ids() -> None:
    """Issue 30.6. A1111 (modules/textual_inversion: EmbeddingDatabase.register_embedding, find_embedding_at_position)
    matches an embedding where the token ids of its name (`tokenize([name])`) occur in a prompt's ids, at any
    position. CLIP's tokenizer lowercases, splits punctuation and single digits off and drops spaces, so (worked out
    from its pre-tokenizer and BPE) `easynegative` and `(BAD-HANDS-5:1.2)` activate EasyNegative and Bad-Hands-5,
    `bad - hands - 5` does too and so does `bad-hands-50` (its ids begin with the name's), while `easynegatives`
    (another BPE split) and `bad hands 5` (no "-") do not."""
    from inferences.engine.request.model_names import mentioned_embeddings
    from inferences.engine.request.options import JobFiles, ModelFile

    files = JobFiles(
        embeddings=(ModelFile(Path("a"), "EasyNegative.safetensors"), ModelFile(Path("b"), "Bad-Hands-5.pt"))
    )

    def found(prompt: str, negative: str = "") -> list[str]:
        request = parse_request("txt2img", txt2img(prompt=prompt, negative_prompt=negative), LIMITS)
        return [file.name for file in mentioned_embeddings(request, files)]

    assert found("a cat", "lowres, easynegative") == ["EasyNegative.safetensors"]
    assert found("(BAD-HANDS-5:1.2)") == found("bad - hands - 5") == found("bad-hands-50") == ["Bad-Hands-5.pt"]
    assert found("easynegatives, bad hands 5") == []
    assert found("[cat:easynegative:0.5]") == ["EasyNegative.safetensors"]  # in a scheduled text too


def test_an_embedding_stays_in_one_chunk_as_a1111_keeps_it() -> None:
    """sd_hijack_clip.tokenize_line: `if len(chunk.tokens) + emb_len > self.chunk_length: next_chunk()` — a
    two-vector embedding named after 74 tokens opens the second chunk; its name's three ids become its two vectors."""
    from types import SimpleNamespace

    from inferences.engine.request.tokens import clip_tokenizer, token_ids
    from inferences.engine.sampling.conditioning import _chunks

    tokenizer = clip_tokenizer()
    name = token_ids("bad-hands")
    assert len(name) == 3
    tokenizer.esd_embeddings = [(name, [49408, 49409], "sha")]
    try:
        chunks = _chunks(SimpleNamespace(tokenizer=tokenizer), "word " * 74 + "bad-hands, cat")
        short = _chunks(SimpleNamespace(tokenizer=tokenizer), "word " * 70 + "bad-hands")
    finally:
        tokenizer.esd_embeddings = []
    assert [len(tokens) for tokens, _ in chunks] == [74, 4]
    assert chunks[1][0][:2] == [49408, 49409] and chunks[1][0][2:] == token_ids(", cat")
    assert [len(tokens) for tokens, _ in short] == [72] and short[0][0][-2:] == [49408, 49409]


def test_several_init_images_make_the_batch_as_in_a1111() -> None:
    """Issue 30.14. A1111's StableDiffusionProcessingImg2Img.init: one picture is repeated over the batch;
    `len(imgs) <= self.batch_size` sets `self.batch_size = len(imgs)`; more raises "bad number of images passed"."""
    pictures = [png_b64(red_disc()) for _ in range(3)]
    made = parse_request("img2img", txt2img(init_images=pictures[:2], batch_size=4, denoising_strength=0.5), LIMITS)
    assert made.batch_size == 2
    one = parse_request("img2img", txt2img(init_images=pictures[:1], batch_size=4, denoising_strength=0.5), LIMITS)
    assert one.batch_size == 4
    with pytest.raises(EngineError, match=r"init_images holds 3 pictures but batch_size is 2"):
        parse_request("img2img", txt2img(init_images=pictures, batch_size=2, denoising_strength=0.5), LIMITS)


def test_a_transparent_init_image_is_laid_on_white_as_in_a1111() -> None:
    """Issue 30.14. A1111's images.flatten(img, opts.img2img_background_color = "#ffffff"): an RGBA picture is pasted
    on white through its own alpha, then made RGB (a plain convert would keep the invisible pixels' red)."""
    from inferences.engine.request.images import flatten

    picture = Image.new("RGBA", (4, 2), (255, 0, 0, 0))
    picture.putpixel((0, 0), (0, 0, 255, 255))
    flat = flatten(picture)
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (0, 0, 255) and flat.getpixel((3, 1)) == (255, 255, 255)


def a1111_resize_image(resize_mode, im, width, height):
    """A1111's modules/images.py resize_image (v1.10.1) with upscaler_for_img2img None, its default, transcribed."""
    lanczos = Image.Resampling.LANCZOS

    def resize(im, w, h):
        return im.resize((w, h), resample=lanczos)

    if resize_mode == 0:
        return resize(im, width, height)
    ratio = width / height
    src_ratio = im.width / im.height
    if resize_mode == 1:
        src_w = width if ratio > src_ratio else im.width * height // im.height
        src_h = height if ratio <= src_ratio else im.height * width // im.width
        resized = resize(im, src_w, src_h)
        res = Image.new("RGB", (width, height))
        res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
        return res
    src_w = width if ratio < src_ratio else im.width * height // im.height
    src_h = height if ratio >= src_ratio else im.height * width // im.width
    resized = resize(im, src_w, src_h)
    res = Image.new("RGB", (width, height))
    res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if ratio < src_ratio:
        fill_height = height // 2 - src_h // 2
        if fill_height > 0:
            res.paste(resized.resize((width, fill_height), box=(0, 0, width, 0)), box=(0, 0))
            res.paste(
                resized.resize((width, fill_height), box=(0, resized.height, width, resized.height)),
                box=(0, fill_height + src_h),
            )
    elif ratio > src_ratio:
        fill_width = width // 2 - src_w // 2
        if fill_width > 0:
            res.paste(resized.resize((fill_width, height), box=(0, 0, 0, height)), box=(0, 0))
            res.paste(
                resized.resize((fill_width, height), box=(resized.width, 0, resized.width, height)),
                box=(fill_width + src_w, 0),
            )
    return res


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize(("source", "target"), [((96, 80), (64, 64)), ((50, 120), (96, 64)), ((120, 50), (64, 96)),
                                                 ((64, 64), (64, 64)), ((33, 77), (128, 48)), ((200, 90), (72, 72))])  # fmt: skip
def test_img2img_resize_modes_are_a1111s(mode, source, target) -> None:
    """Issue 30.14: resize modes 1 (crop) and 2 (fill, with the edge rows or columns stretched into the bands) as
    A1111's images.resize_image makes them, to the pixel (the oracle above is its code)."""
    from inferences.engine.request.images import resize

    rng = np.random.default_rng(source[0] * 1000 + source[1])
    picture = Image.fromarray(rng.integers(0, 256, (source[1], source[0], 3), dtype=np.uint8))
    ours, theirs = resize(picture, *target, mode), a1111_resize_image(mode, picture, *target)
    assert ours.size == target and ours.mode == "RGB"
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_firstphase_size_is_the_first_pass_as_in_a1111() -> None:
    """Issue 30.18. A1111's StableDiffusionProcessingTxt2Img.__post_init__: `if self.firstphase_width != 0 or
    self.firstphase_height != 0: ... self.width = self.firstphase_width; self.height = self.firstphase_height`; the
    hires target is then calculate_target_resolution's, from that size (hr_scale 2: 512x384). img2img has no such
    fields in A1111 and keeps its size."""
    first = parse_request(
        "txt2img", txt2img(width=512, height=512, firstphase_width=256, firstphase_height=192), Limits()
    )
    assert (first.width, first.height) == (256, 192)
    hires = {
        "enable_hr": True,
        "hr_scale": 2,
        "hr_upscaler": "Latent",
        "firstphase_width": 256,
        "firstphase_height": 192,
    }
    upscaled = parse_request("txt2img", txt2img(width=512, height=512, **hires), Limits())
    assert (upscaled.width, upscaled.height) == (256, 192)
    assert (upscaled.hires.upscale_width, upscaled.hires.upscale_height) == (512, 384)
    plain = parse_request("txt2img", txt2img(width=512, height=448, firstphase_width=0, firstphase_height=0), Limits())
    assert (plain.width, plain.height) == (512, 448) and plain.ignored == []
    with pytest.raises(
        EngineError, match="firstphase_height must be an integer from 64 to 2048 and a multiple of 8, not 0"
    ):
        parse_request("txt2img", txt2img(firstphase_width=256, firstphase_height=0), Limits())
    picture = txt2img(
        init_images=[png_b64(red_disc())], width=128, height=96, firstphase_width=64, firstphase_height=64
    )
    kept = parse_request("img2img", picture, Limits())
    assert (kept.width, kept.height) == (128, 96) and kept.ignored == []


A1111_SCHEDULERS = [  # modules/sd_schedulers.py (v1.10.1): (name, label, aliases), in its order
    ("automatic", "Automatic", []), ("uniform", "Uniform", []), ("karras", "Karras", []),
    ("exponential", "Exponential", []), ("polyexponential", "Polyexponential", []),
    ("sgm_uniform", "SGM Uniform", ["SGMUniform"]), ("kl_optimal", "KL Optimal", []),
    ("align_your_steps", "Align Your Steps", []), ("simple", "Simple", []), ("normal", "Normal", []),
    ("ddim", "DDIM", []), ("beta", "Beta", []),
]  # fmt: skip


def a1111_sampler_and_scheduler(sampler_name: str, scheduler_name: str | None) -> tuple[str, str]:
    """A1111's modules/sd_samplers.py get_sampler_and_scheduler (v1.10.1), transcribed without its fallback to the
    default sampler: (the sampler name it looks up, the scheduler's name)."""
    by_name = {
        **{name: name for name, _, _ in A1111_SCHEDULERS},
        **{label: name for name, label, _ in A1111_SCHEDULERS},
    }
    found = by_name.get(scheduler_name, "automatic")
    name = sampler_name
    for scheduler, label, aliases in A1111_SCHEDULERS:
        for option in [label, scheduler, *aliases]:
            if name.endswith(" " + option):
                found = scheduler
                name = name[0 : -(len(option) + 1)]
                break
    return name, found


@pytest.mark.parametrize("scheduler", [None, "Automatic", "Karras", "Exponential", "SGM Uniform", "beta"])
def test_sampler_names_with_a_schedule_type_read_as_in_a1111(scheduler) -> None:
    """Issue 30.10: a sampler name may end in any schedule type's label, name or alias, which wins over `scheduler`."""
    bases = ["Euler a", "Euler", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE", "LMS", "Restart"]
    suffixes = ["", *(f" {option}" for name, label, aliases in A1111_SCHEDULERS for option in [label, name, *aliases])]
    for base in bases:
        for suffix in suffixes:
            expected_name, expected_schedule = a1111_sampler_and_scheduler(base + suffix, scheduler)
            if expected_name != base:  # " SGM Uniform": A1111 strips " Uniform" first, then knows no "Euler SGM"
                with pytest.raises(EngineError, match="is not supported"):  # where A1111 runs its default sampler
                    resolve_sampler(base + suffix, scheduler)
                continue
            assert resolve_sampler(base + suffix, scheduler) == (
                base,
                None if expected_schedule == "automatic" else expected_schedule,
            ), base + suffix
    with pytest.raises(EngineError, match="sampler_name 'DDIM CFG\\+\\+' is not supported"):
        resolve_sampler("DDIM CFG++")
