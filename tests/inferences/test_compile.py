"""The compiled GPU path, checked on CPU with dynamo's `eager` backend: whole graphs, bounded recompilation."""

import numpy as np
import pytest
import torch

from inferences.engine.errors import EngineError
from inferences.engine.models import compiling
from inferences.engine.models.compiling import BUCKETS, bucket, compile_options, graph_count, padded
from inferences.engine.request.options import EngineOptions, JobFiles
from inferences.engine.runner import Engine

from .conftest import txt2img
from .test_controlnet import unit, with_units
from .test_ksampling import png_pixels


def test_batches_are_padded_to_buckets():
    assert [bucket(rows) for rows in (1, 2, 3, 4, 5, 9, 32, 33)] == [2, 2, 4, 4, 8, 16, 32, 64]
    assert bucket(BUCKETS[-1] + 1) == BUCKETS[-1] + 1  # beyond the last bucket: its own size
    rows = padded(torch.arange(6.0).reshape(3, 2), 4)
    assert rows.tolist() == [[0, 1], [2, 3], [4, 5], [4, 5]]


def test_an_unknown_compile_mode_is_refused(models):
    engine = Engine(EngineOptions(compile="fastest"))
    with pytest.raises(EngineError, match="off, default, reduce-overhead, max-autotune"):
        engine.run("txt2img", txt2img(), JobFiles(checkpoint=models["checkpoint"]))


def test_batch_sizes_and_a_lora_compile_a_bounded_number_of_graphs(models, engine, monkeypatch):
    # whole batches per UNet call, as on CUDA (on CPU each call holds one image: the next test)
    monkeypatch.setattr("inferences.engine.sampling.ksampling.calls_per_image", lambda device: False)
    compiled = Engine(EngineOptions(compile="default", compile_backend="eager", cache_bytes=1024**3))
    files = JobFiles(checkpoint=models["checkpoint"], loras=(models["lora"],))
    counts = []

    def run(**payload):
        result = compiled.run("txt2img", txt2img(**{"steps": 3, "seed": 21, **payload}), files)
        counts.append(graph_count())
        return result

    first = run()  # the UNet at 2 rows ([cond, uncond]) and the VAE decoder: two graphs
    run(seed=22)  # the same shapes: none
    run(batch_size=2)  # 4 rows: the 4-row bucket
    run(batch_size=3)  # 6 rows, padded to 8: the 8-row bucket
    run(batch_size=4)  # 8 rows: the 8-row bucket again
    run(prompt="a cat <lora:watercolor:0.8>")  # the LoRA's modules: the UNet once more
    run(seed=23)  # LoRA unloaded: the first graph again
    run(batch_size=3)  # and the 8-row one
    run(prompt="a dog <lora:watercolor:0.5>")  # another weight: dynamo guards on peft's scale, one graph more
    run(seed=24)  # and back: none
    start = counts[0] - 2
    assert [count - start for count in counts] == [2, 2, 3, 4, 4, 5, 5, 5, 6, 6]
    # the compiled UNet gives the eager one's picture (the eager backend runs the same operations)
    plain = engine.run("txt2img", txt2img(steps=3, seed=21), JobFiles(checkpoint=models["checkpoint"]))
    assert np.array_equal(png_pixels(first.images[0]), png_pixels(plain.images[0]))


def test_on_cpu_every_batch_size_runs_the_one_image_graph(models):
    compiled = Engine(EngineOptions(compile="default", compile_backend="eager", cache_bytes=1024**3))
    files = JobFiles(checkpoint=models["checkpoint"])
    torch._dynamo.reset()  # graphs another test compiled for the same shapes would be reused: count from none
    before, counts = graph_count(), []
    for batch_size in (1, 2, 3, 4):
        compiled.run("txt2img", txt2img(steps=3, seed=21, batch_size=batch_size), files)
        counts.append(graph_count() - before)
    assert counts == [2, 2, 2, 2]  # the UNet at [cond, uncond] of one image and the VAE decoder, whatever the batch


def test_cuda_graph_modes_replay_the_unet_only():
    """reduce-overhead and max-autotune record the UNet as CUDA graphs; the VAE decoder, whose decoded images
    diffusers keeps while it decodes the next, gets the mode's other options without them."""
    assert compile_options("reduce-overhead", "inductor", cuda_graphs=True)["mode"] == "reduce-overhead"
    assert compile_options("reduce-overhead", "inductor", cuda_graphs=False)["options"] == {"triton.cudagraphs": False}
    decoder = compile_options("max-autotune", "inductor", cuda_graphs=False)
    assert "mode" not in decoder and decoder["options"]["max_autotune"] and not decoder["options"]["triton.cudagraphs"]
    assert compile_options("default", "inductor", cuda_graphs=False)["mode"] == "default"
    assert compile_options("reduce-overhead", "eager", cuda_graphs=True) == {
        "fullgraph": True, "dynamic": False, "backend": "eager"
    }  # fmt: skip


def test_no_sampler_keeps_a_unet_output_past_the_next_call(models, monkeypatch):
    """A CUDA graph's replay writes its output to the memory the previous replay's output is in (and torch frees
    that output); a sampler that kept one would compute with the next call's numbers. Here a UNet that returns the
    same memory at every call of a shape, as a graph does, gives the pictures of the same compiled UNet returning
    new memory, on every sampler path: per-image calls of a CPU batch, separate cond/uncond calls (a long prompt
    against a short negative one), a composable prompt, multistep samplers that keep earlier predictions (DPM++ 2M,
    PLMS) and a ControlNet."""
    long_prompt = ", ".join(["a watercolour of a harbour at dawn with boats"] * 12)  # > 75 tokens: 2 chunks
    payloads = [
        txt2img(steps=3, seed=31, batch_size=2),
        txt2img(steps=3, seed=32, prompt=long_prompt, negative_prompt=""),
        txt2img(steps=3, seed=33, prompt="a cat AND a dog :0.7"),
        txt2img(steps=4, seed=34, sampler_name="DPM++ 2M Karras", batch_size=2),
        txt2img(steps=4, seed=35, sampler_name="PLMS"),
        with_units(unit(), steps=3, seed=36),
    ]
    files = JobFiles(checkpoint=models["checkpoint"], controlnets=(models["controlnet"],))

    def engine() -> Engine:
        return Engine(EngineOptions(compile="reduce-overhead", compile_backend="eager", cache_bytes=1024**3))

    fresh = engine()
    expected = [fresh.run("txt2img", payload, files).images for payload in payloads]

    shared: dict[tuple[int, ...], torch.Tensor] = {}
    pointers: set[int] = set()

    def with_static_outputs(pipe, *args):
        compiling.compile_pipeline(pipe, *args)
        call = pipe.unet._compiled_call_impl

        def replay(*arguments, **keywords):
            out = call(*arguments, **keywords)
            memory = shared.setdefault(tuple(out.sample.shape), torch.empty_like(out.sample))
            memory.copy_(out.sample)
            pointers.add(memory.data_ptr())
            return type(out)(sample=memory)

        pipe.unet._compiled_call_impl = replay

    monkeypatch.setattr("inferences.engine.models.device.compile_pipeline", with_static_outputs)
    graphed = engine()
    for payload, pictures in zip(payloads, expected, strict=True):
        replayed = graphed.run("txt2img", payload, files).images
        assert len(replayed) == len(pictures)
        for ours, theirs in zip(replayed, pictures, strict=True):
            assert np.array_equal(png_pixels(ours), png_pixels(theirs)), payload["prompt"]
    assert len(pointers) == len(shared)  # every call of a shape did return the one memory
