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
