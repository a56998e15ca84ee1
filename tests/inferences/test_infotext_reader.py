"""Reading an infotext back (A1111's infotext_utils.parse_generation_parameters, its parsing part), and the Generate
form's values from it (A1111's PNG Info → txt2img). Expected values worked out by hand from A1111 v1.10.1's code:
`re_param_code`, the "fewer than three fields" rule, `unquote` (json.loads), and `re_imagesize` splitting sizes."""

import pytest

from inferences.engine.request.infotext_reader import parse_infotext


def test_prompt_negative_prompt_and_fields():
    text = (
        "a cat,\nin the snow\nNegative prompt: blurry,\nugly\n"
        'Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: 512x768, Lora hashes: "fox: 1a2b, owl: 3c4d", '
        'Hires prompt: "a \\"big\\" cat", Version: v1.10.1'
    )
    assert parse_infotext(text) == {
        "Prompt": "a cat,\nin the snow",
        "Negative prompt": "blurry,\nugly",
        "Steps": "20", "Sampler": "DPM++ 2M", "CFG scale": "7", "Seed": "1", "Size-1": "512", "Size-2": "768",
        "Lora hashes": "fox: 1a2b, owl: 3c4d", "Hires prompt": 'a "big" cat', "Version": "v1.10.1",
    }  # fmt: skip


def test_a_last_line_with_fewer_than_three_fields_is_prompt():
    assert parse_infotext("a cat\nSteps: 20, Seed: 3") == {"Prompt": "a cat\nSteps: 20, Seed: 3", "Negative prompt": ""}


def test_a_bad_quoted_value_is_kept_as_written():
    fields = parse_infotext('p\nSteps: 2, Seed: 1, Note: "a\\q"')
    assert fields["Note"] == '"a\\q"'  # json.loads fails: A1111's unquote returns the text


def test_what_the_engine_writes_reads_back(engine, files):
    from .conftest import txt2img

    result = engine.run("txt2img", txt2img(prompt="a (red:1.2) fox", negative_prompt="dull", steps=3, seed=77,
                                          width=64, height=96, cfg_scale=6.5, sampler_name="Euler"), files)  # fmt: skip
    fields = parse_infotext(result.info["infotexts"][0])
    assert (fields["Prompt"], fields["Negative prompt"]) == ("a (red:1.2) fox", "dull")
    assert (fields["Steps"], fields["Sampler"], fields["CFG scale"], fields["Seed"]) == ("3", "Euler", "6.5", "77")
    assert (fields["Size-1"], fields["Size-2"]) == ("64", "96")


@pytest.mark.django_db
def test_the_form_lists_what_it_cannot_take(admin_user):
    from inferences.forms import GenerateForm, settings_from_infotext

    text = "a cat\nSteps: 500, Sampler: Mystery, CFG scale: 7, Seed: 1, Size: 512x512, Model: absent, ENSD: 31337"
    values, unmapped = settings_from_infotext(text, GenerateForm(user=admin_user))
    assert values == {"prompt": "a cat", "negative_prompt": "", "cfg_scale": 7.0, "seed": 1, "width": 512,
                      "height": 512, "enable_hr": False, "task": "txt2img"}  # fmt: skip
    assert unmapped[0].startswith("Steps: 500 (") and "ENSD: 31337" in unmapped
    assert "Sampler: Mystery" in unmapped and "Model: absent (not among the checkpoints you may use)" in unmapped


# --- the payload's `infotext` key (issue 30.18): A1111's Api.apply_infotext ---------------------------------------
# Expected payloads worked out from A1111 v1.10.1: api.py apply_infotext (paste fields with an `api` name, skipped
# where the request sets the key; values cast to the field's type), ui.py's txt2img paste fields, the Sampler and
# Seed scripts' fields (the only ones with API names on the img2img tab), parse_generation_parameters' defaults, and
# get_override_settings against a fresh install's options (disable_weights_auto_swap on: no model swap).
A1111_TEXT = (
    "a cat\nNegative prompt: ugly\nSteps: 12, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 42, "
    "Size: 512x768, Model hash: 0123456789, Model: m, Denoising strength: 0.4, Clip skip: 2, Hires upscale: 2, "
    "Hires upscaler: Latent, ENSD: 31337, RNG: GPU, Seed resize from: 640x512, Version: v1.10.1"
)


def test_an_infotext_fills_what_a_txt2img_payload_does_not_set():
    from inferences.engine.request.infotext_reader import apply_infotext

    filled = apply_infotext({"infotext": A1111_TEXT, "steps": 30, "override_settings": {"eta_noise_seed_delta": 0}},
                            "txt2img")  # fmt: skip
    filled.pop("infotext")
    assert filled == {
        "steps": 30,  # the payload's own wins
        "prompt": "a cat", "negative_prompt": "ugly", "cfg_scale": 6.5, "width": 512, "height": 768,
        "denoising_strength": 0.4, "enable_hr": True, "hr_scale": 2.0, "hr_upscaler": "Latent",
        "hr_resize_x": 0, "hr_resize_y": 0, "hr_checkpoint_name": "Use same checkpoint",
        "hr_sampler_name": "Use same sampler", "hr_scheduler": "Automatic", "hr_prompt": "",
        "hr_negative_prompt": "",
        "sampler_name": "DPM++ 2M", "scheduler": "Automatic",  # Karras is DPM++ 2M's own: A1111 converts it
        "seed": 42, "seed_resize_from_h": 640, "seed_resize_from_w": 512,  # A1111's crosswise binding
        "override_settings": {"eta_noise_seed_delta": 0, "CLIP_stop_at_last_layers": 2},  # RNG GPU: the default
    }  # fmt: skip


def test_an_img2img_infotext_sets_only_the_scripts_fields():
    from inferences.engine.request.infotext_reader import apply_infotext

    filled = apply_infotext({"infotext": A1111_TEXT, "prompt": "mine"}, "img2img")
    assert {key: value for key, value in filled.items() if key not in ("infotext", "override_settings")} == {
        "prompt": "mine", "steps": 12, "sampler_name": "DPM++ 2M", "scheduler": "Automatic", "seed": 42,
        "seed_resize_from_h": 640, "seed_resize_from_w": 512,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p\nSteps: many, Seed: 1, CFG scale: 7", "infotext: Steps is 'many', which is not a int"),
        ("p\nSteps: 2, Sampler: Mystery, CFG scale: 7", "infotext: sampler_name 'Mystery' is not supported"),
    ],
)
def test_an_infotext_that_does_not_read_is_refused_with_the_field(text, message):
    from inferences.engine.errors import EngineError
    from inferences.engine.request.limits import Limits
    from inferences.engine.request.payload import parse_request

    with pytest.raises(EngineError, match=message):
        parse_request("txt2img", {"infotext": text}, Limits())
    with pytest.raises(EngineError, match="infotext must be a string"):
        parse_request("txt2img", {"infotext": ["a"]}, Limits())


def test_a_pictures_infotext_alone_makes_the_same_picture_again(engine, files):
    """What the engine writes, sent back as the payload's only key, is the same job: A1111's reproduce workflow."""
    from .conftest import txt2img

    first = engine.run("txt2img", txt2img(prompt="a [fox:owl:0.5], (red:1.2)", negative_prompt="dull", steps=4,
                                          seed=1234, width=64, height=96, cfg_scale=5.5, sampler_name="DPM++ 2M",
                                          override_settings={"CLIP_stop_at_last_layers": 2}), files)  # fmt: skip
    [text] = first.info["infotexts"]
    again = engine.run("txt2img", {"infotext": text}, files)
    assert again.images == first.images and again.info["infotexts"] == [text] and again.ignored == []
