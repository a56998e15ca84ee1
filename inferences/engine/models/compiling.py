"""torch.compile of the UNet and the VAE decoder (ESD_ENGINE_COMPILE), with batch-size buckets.

`default`, `reduce-overhead` and `max-autotune` are torch.compile's modes: reduce-overhead replays the UNet's
kernels as CUDA graphs (one launch per step instead of hundreds: a batch-1 job is bound by kernel launches, issue
28.3), max-autotune adds autotuned kernels to that (minutes of compilation per shape). A CUDA graph writes its
outputs to the same memory at every replay: the samplers turn each UNet output into a new tensor before the next
call (k-diffusion's denoiser scales it), which tests/inferences/test_compile.py holds with a UNet that returns the
same memory at every call; diffusers' VAE decode keeps each image's output while it decodes the next, so the
decoder, bound by arithmetic rather than launches anyway, is compiled without CUDA graphs.

Every mode compiles whole graphs (`fullgraph=True`, so a graph break is an error here, not a silent slowdown) for
fixed shapes. A new shape is a new compilation, so the UNet's batch is padded to the next bucket (2, 4, 8, ...):
batch sizes 1 to 32 cost six graphs per picture size, not 32. Padding repeats the last row, and the padded rows are
dropped. On CPU every call holds one image's rows (invariance.py), so a lone job and a batch pad alike. A compiled
VAE decoder decodes one image at a time (slicing; uncompiled on CUDA it takes as many as free memory holds), so it
needs no bucket. Loading a LoRA changes the modules the graph was traced through, which is one compilation of its
own; unloading it brings the first graph back from the cache (tests/inferences/test_compile.py counts them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import EngineError
from .invariance import calls_per_image

MODES = ("off", "default", "reduce-overhead", "max-autotune")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
BUCKETS = (2, 4, 8, 16, 32, 64, 128)
GRAPHS_PER_MODULE = 64  # dynamo's cache per compiled frame: buckets x picture sizes x LoRA sets kept compiled


def compile_pipeline(pipe: Any, mode: str, backend: str = "inductor", cache: Path | None = None) -> None:
    """Compile the UNet and the VAE decoder in place (the modules keep their names: LoRA loading still maps); with
    inductor, the compiled graphs are kept in `cache` (use_compile_cache)."""
    if mode not in MODES:
        raise EngineError(f"ESD_ENGINE_COMPILE must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        return
    if backend == "inductor" and cache is not None:
        use_compile_cache(cache)
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, GRAPHS_PER_MODULE)
    pipe.unet.compile(**compile_options(mode, backend, cuda_graphs=True))
    pipe.vae.decoder.compile(**compile_options(mode, backend, cuda_graphs=False))


def compile_options(mode: str, backend: str, *, cuda_graphs: bool) -> dict[str, Any]:
    """torch.compile's arguments for `mode`; without `cuda_graphs`, the mode's inductor options less its CUDA
    graphs (torch.compile takes a mode or options, not both)."""
    options: dict[str, Any] = {"fullgraph": True, "dynamic": False, "backend": backend}
    if backend != "inductor":
        return options
    if mode in CUDA_GRAPH_MODES and not cuda_graphs:
        import torch._inductor

        options["options"] = {**torch._inductor.list_mode_options(mode), "triton.cudagraphs": False}
    else:
        options["mode"] = mode
    return options


def use_compile_cache(folder: Path) -> None:
    """Keep inductor's compiled graphs (its FX graph cache, the AOTAutograd cache and Triton's kernels) in `folder`,
    so that a restarted worker loads what an earlier run compiled instead of compiling again (issue 28.3: a
    compiled worker's first job waited 20 s). Dynamo still traces each graph (a second or so); the code generation
    and the C++/Triton compilation are what the cache saves. Set before the process's first compilation: inductor
    reads the folder from the environment when it first needs it."""
    import torch._functorch.config
    import torch._inductor.config

    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    os.environ.setdefault("TRITON_CACHE_DIR", str(folder / "triton"))
    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True


def is_compiled(module: Any) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


def bucket(rows: int) -> int:
    """The batch size a compiled UNet runs `rows` rows at."""
    return next((size for size in BUCKETS if size >= rows), rows)


def warm_up_images(device: str, max_images: int) -> list[int]:
    """Image counts whose runs compile every UNet graph a loop of up to `max_images` images uses on `device`: one
    count per bucket of its rows (two rows an image: [cond, uncond]), so no bucket compiles while a job waits; one
    image where the UNet runs one image's rows per call whatever the batch (a CPU: invariance.py)."""
    if calls_per_image(torch.device(device)):
        return [1]
    largest = bucket(2 * max_images)
    return [rows // 2 for rows in BUCKETS if rows <= largest]


def padded(tensor: torch.Tensor | None, rows: int) -> torch.Tensor | None:
    """`tensor` with its last row repeated up to `rows` rows."""
    if tensor is None or tensor.shape[0] >= rows:
        return tensor
    extra = tensor[-1:].expand(rows - tensor.shape[0], *tensor.shape[1:])
    return torch.cat([tensor, extra])


def graph_count() -> int:
    """Graphs dynamo has compiled in this process (what a recompilation adds to)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
