"""A prompt's scheduled texts are encoded as one batch (issue 30.4), as A1111's FrozenCLIPEmbedderWithCustomWordsBase
.forward does with the texts get_learned_conditioning hands it: per chunk index one batch (a text with fewer chunks
gets `empty_chunk()`: BOS then EOS padding), weighted and mean-restored with one mean for the whole batch
(sd_emphasis.EmphasisOriginal over z of shape [texts, 77, dim]). Expected values come from those rules applied to
the plain encodings; compared with a float tolerance, never to one CPU's bits."""

import pytest
import torch

from inferences.engine.sampling.conditioning import sd1_schedule


@pytest.fixture(scope="module")
def pipe():
    from inferences.engine.devtools.tiny import build_tiny_pipeline

    return build_tiny_pipeline(0)


def test_a_shorter_text_is_padded_with_empty_chunks(pipe):
    long, short = "word " * 80, "a cat"
    padded_long, padded_short = sd1_schedule(pipe, [long, short], 1)
    assert padded_long.shape[1] == padded_short.shape[1] == 154  # A1111: 2 x 77 for both, not 154 and 77
    [alone] = sd1_schedule(pipe, [short], 1)
    [empty] = sd1_schedule(pipe, [""], 1)
    torch.testing.assert_close(padded_short[:, :77], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded_short[:, 77:], empty, rtol=1e-5, atol=1e-5)  # BOS, then EOS to the end


def test_emphasis_restores_one_mean_over_the_scheduled_texts(pipe):
    weighted, plain_dog = sd1_schedule(pipe, ["a (cat:1.5)", "a dog"], 1)
    unweighted_cat, unweighted_dog = sd1_schedule(pipe, ["a cat", "a dog"], 1)  # same tokens, no weight
    z = torch.cat([unweighted_cat, unweighted_dog])
    scale = torch.ones(2, 77, 1)
    scale[0, 2] = 1.5  # BOS, "a", "cat"
    ratio = z.mean() / (z * scale).mean()
    torch.testing.assert_close(plain_dog, unweighted_dog * ratio, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weighted, unweighted_cat * scale[:1] * ratio, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(plain_dog, unweighted_dog)  # the unweighted text moved too, as in A1111


def test_a_job_schedules_its_texts_from_one_batch(models):
    """Prompt editing: both texts of `[cat:dog:0.5]` come from one encoding (the conditioning the engine runs)."""
    from inferences.engine.generate import ModelRun
    from inferences.engine.models.loading import load_model
    from inferences.engine.request.limits import Limits
    from inferences.engine.request.options import EngineOptions
    from inferences.engine.request.payload import parse_request

    from .conftest import txt2img

    request = parse_request("txt2img", txt2img(prompt="a (red:1.3) [cat:dog:0.5]", steps=4), Limits())
    run = ModelRun.of(load_model(models["checkpoint"], None, EngineOptions()))
    with torch.inference_mode():
        conditioning = run.conditioning(request, (request.text, request.negative_text), "Euler", 4, (64, 64), 1)
        expected = sd1_schedule(run.pipe, ["a (red:1.3) cat", "a (red:1.3) dog"], 1)
    first, second = (cond for _, cond in conditioning.cond)
    torch.testing.assert_close(first.hidden, expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second.hidden, expected[1], rtol=1e-5, atol=1e-6)


def test_sdxl_schedules_pad_each_encoder_and_pool_each_texts_first_chunk():
    from inferences.engine.devtools.tiny import build_tiny_pipeline
    from inferences.engine.sampling.conditioning import sdxl_schedule

    pipe = build_tiny_pipeline(0, "sdxl")
    (long, long_pooled), (short, short_pooled) = sdxl_schedule(pipe, ["cat " * 80, "a dog"], 1)
    assert long.shape[1] == short.shape[1] == 154
    [(alone, alone_pooled)] = sdxl_schedule(pipe, ["a dog"], 1)
    torch.testing.assert_close(short[:, :77], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(short_pooled, alone_pooled, rtol=1e-5, atol=1e-5)  # its own first chunk's pooled
    assert not torch.allclose(long_pooled, short_pooled)
    # sgm's force_zero_embeddings: an empty negative prompt is zeros only when every scheduled text is empty
    [(zeros, zero_pooled)] = sdxl_schedule(pipe, [""], 1, negative=True)
    assert not zeros.any() and not zero_pooled.any()
    (mixed, _), _ = sdxl_schedule(pipe, ["", "blurry"], 1, negative=True)
    assert mixed.any()
