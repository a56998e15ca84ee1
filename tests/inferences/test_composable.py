"""Composable diffusion (issue 30.1), as A1111 v1.10.1 does it: prompt_parser.get_multicond_prompt_list splits the
positive prompt at `\\bAND\\b` and takes each sub-prompt's trailing `:weight` off (re_weight); CFGDenoiser runs
every sub-prompt's conditioning beside the negative one (reconstruct_multicond_batch evens out their lengths by
repeating the last vector) and combine_denoised makes uncond + sum((cond_k - uncond) * weight_k * cfg_scale)."""

import numpy as np
import pytest
import torch

from inferences.engine.request.prompts import composable, is_composable
from inferences.engine.sampling import ksampling

from .conftest import txt2img


@pytest.mark.parametrize(
    ("prompt", "parts"),
    [
        ("a cat AND a dog:0.5", [("a cat", 1.0), (" a dog", 0.5)]),  # re_weight strips the end only
        ("masterpiece, a cat:1.5", [("masterpiece, a cat", 1.5)]),
        ("a (cat:1.5)", [("a (cat:1.5)", 1.0)]),  # emphasis, not a weight: the text ends in ")"
        ("[cat:dog:0.5]", [("[cat:dog:0.5]", 1.0)]),
        ("a ANDROID", [("a ANDROID", 1.0)]),  # \bAND\b
        ("a cat:-0.5 AND b", [("a cat", -0.5), (" b", 1.0)]),
    ],
)
def test_the_prompt_splits_as_a1111s(prompt, parts):
    assert composable(prompt) == parts
    assert is_composable(prompt) == (len(parts) > 1 or parts[0][1] != 1.0)


class Recorder:
    """A fake model: its output for a row is x + the mean of that row's conditioning, so each row's text is seen."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, x, sigma, cond, **_):
        self.calls.append(x.shape[0])
        return x + cond.hidden.mean(dim=(1, 2))[:, None, None, None]


def text(value: float, tokens: int) -> ksampling.TextCond:
    hidden = torch.full((1, tokens, 4), value)
    hidden[:, -1] = value + 1  # the last vector, which padding repeats
    return ksampling.TextCond(hidden)


def test_combine_denoised_weights_each_sub_prompt():
    parts = [([(99, text(1.0, 77))], 1.0), ([(99, text(3.0, 77))], 0.5)]
    conditioning = ksampling.Conditioning(cond=parts[0][0], uncond=[(99, text(0.0, 77))], parts=parts)
    model = Recorder()
    x = torch.zeros(1, 1, 1, 1)
    denoised = ksampling.CFGDenoiser(model, conditioning, 7.0)(x, torch.ones(1))
    means = [text(v, 77).hidden.mean().item() for v in (1.0, 3.0, 0.0)]
    expected = means[2] + (means[0] - means[2]) * 1.0 * 7.0 + (means[1] - means[2]) * 0.5 * 7.0
    assert denoised.item() == pytest.approx(expected, rel=1e-6)
    assert model.calls == [3]  # lengths agree: the sub-prompts and the negative prompt in one call


def test_sub_prompts_of_other_lengths_repeat_their_last_vector():
    short, long = text(1.0, 77), text(3.0, 154)
    parts = [([(99, short)], 1.0), ([(99, long)], 1.0)]
    conditioning = ksampling.Conditioning(cond=parts[0][0], uncond=[(99, text(0.0, 77))], parts=parts)
    model = Recorder()
    denoised = ksampling.CFGDenoiser(model, conditioning, 1.0)(torch.zeros(1, 1, 1, 1), torch.ones(1))
    padded = torch.cat([short.hidden, short.hidden[:, -1:].expand(-1, 77, -1)], dim=1)
    uncond = text(0.0, 77).hidden.mean().item()
    expected = uncond + (padded.mean().item() - uncond) + (long.hidden.mean().item() - uncond)
    assert denoised.item() == pytest.approx(expected, rel=1e-6)
    assert model.calls == [2, 1]  # 154 tokens against 77: the sub-prompts' call, then the negative one


def pixels(result) -> np.ndarray:
    return np.asarray(result.pictures[0][0]).astype(int)


def test_a_weighted_prompt_is_its_cfg_scale_times_the_weight(engine, files):
    """combine_denoised with one sub-prompt of weight w: uncond + (cond - uncond) * (w * scale), the very operation
    of a plain prompt at CFG w x scale, so the pictures are equal; AND changes the picture; weight 1 is plain."""
    weighted = engine.run("txt2img", txt2img(prompt="a red fox:1.5", cfg_scale=7.0, steps=3, seed=4), files)
    scaled = engine.run("txt2img", txt2img(prompt="a red fox", cfg_scale=10.5, steps=3, seed=4), files)
    assert np.array_equal(pixels(weighted), pixels(scaled))
    assert weighted.info["infotexts"][0].startswith("a red fox:1.5\n")  # the prompt as written, as A1111's
    plain = engine.run("txt2img", txt2img(prompt="a red fox", cfg_scale=7.0, steps=3, seed=4), files)
    both = engine.run("txt2img", txt2img(prompt="a red fox AND a blue boat:0.7", cfg_scale=7.0, steps=3, seed=4), files)
    assert np.abs(pixels(both) - pixels(plain)).max() > 5 and both.ignored == []
    one = engine.run("txt2img", txt2img(prompt="a red fox:1", cfg_scale=7.0, steps=3, seed=4), files)
    assert np.array_equal(pixels(one), pixels(plain))


def test_composable_jobs_run_alone_and_count_their_rows():
    from inferences.engine.request.batch_key import ALONE, batch_key
    from inferences.engine.request.job_models import JobModels
    from inferences.engine.request.limits import Limits
    from inferences.engine.request.payload import parse_request

    request = parse_request("txt2img", txt2img(prompt="a AND b AND c"), Limits())
    assert batch_key(request, JobModels()) == ALONE
    assert batch_key(parse_request("txt2img", txt2img(prompt="a b c"), Limits()), JobModels()) != ALONE
