"""Compiled graphs kept on disk (issue 28.3): a restarted worker loads what an earlier process compiled instead of
compiling again. Two processes compile the same small UNet and VAE decoder through compile_pipeline with inductor
on CPU; the second finds every graph in the cache under the data directory."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROCESS = """
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch._dynamo.utils import counters

from inferences.engine.models.compiling import compile_pipeline

class Small(torch.nn.Module):  # a module of the caller's, as diffusers' are (dynamo skips torch's own frames)
    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.first = torch.nn.Conv2d(channels_in, 8, 3, padding=1)
        self.second = torch.nn.Conv2d(8, channels_out, 3, padding=1)

    def forward(self, x):
        return self.second(torch.nn.functional.silu(self.first(x)))


torch.manual_seed(0)
unet, decoder = Small(4, 4), Small(4, 3)
pipe = SimpleNamespace(unet=unet, vae=SimpleNamespace(decoder=decoder))
compile_pipeline(pipe, "default", "inductor", Path(sys.argv[1]))
with torch.inference_mode():
    pipe.vae.decoder(pipe.unet(torch.randn(1, 4, 8, 8)))
print(counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"])
"""


def compile_in_a_new_process(cache: Path) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", PROCESS, str(cache)], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    )
    hits, misses = done.stdout.split()[-2:]
    return int(hits), int(misses)


def test_a_restarted_worker_loads_its_compiled_graphs_from_the_data_directory(tmp_path):
    cache = tmp_path / "torch-compile"
    first = compile_in_a_new_process(cache)
    assert first[0] == 0 and first[1] >= 2  # the UNet's and the decoder's graphs, compiled
    assert any(cache.rglob("*")), "nothing was written to the cache folder"
    second = compile_in_a_new_process(cache)
    assert second == (first[1], 0)  # every graph loaded, none compiled again
