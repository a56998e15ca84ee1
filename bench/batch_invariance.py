"""Which UNet operations give a row another result when it shares its call with other rows, on this CPU.

    .venv/bin/python bench/batch_invariance.py [--rows 4 8] [--threads 2] [--cost 256]

For the tiny SD 1.x and SDXL UNets (random weights) and for single layers at SD 1.5's real sizes, each module is
run on a batch of N rows and again on the batch's first image alone (its [cond, uncond] pair, 2 rows, as the engine
calls it), from the same inputs: forward hooks capture each module's inputs in the batched run, and each module is
called again on its own inputs' first rows. A module whose first rows differ, while none of its children's do, is
where invariance breaks: the operations it runs itself (a GEMM in a Linear, a convolution, attention's matrix
products, a norm's reduction). This runs once per ATEN_CPU_CAPABILITY the CPU supports and per oneDNN ISA cap, each
in a fresh process (both are read when torch loads), and prints one line per setting: the modules that differ, by
type, and how far. Not a test: it documents what the engine does not rely on (inferences/engine/models/invariance.py): the
engine calls the UNet one image at a time on CPU, so these differences never reach a picture.

`--cost SIZE` prices that rule at a real model's size: an SD 1.5-sized UNet (860 M random weights, fp32) at SIZE
pixels, one call of 8 rows (4 images) against 4 calls of 2 rows, alternating, medians of 3.
"""

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CAPABILITIES = ("default", "avx2", "avx512")
ONEDNN_CAPS = ("SSE41", "AVX2", "AVX512_CORE")


def supported_capabilities() -> list[str]:
    """The ATEN_CPU_CAPABILITY values this CPU can run (torch ignores the variable beyond what the CPU has)."""
    flags = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    found = ["default"]
    if {"avx2", "fma"} <= flags:
        found.append("avx2")
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        found.append("avx512")
    return found


def _first_rows(value: Any, rows: int, keep: int) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value[:keep].clone() if value.ndim and value.shape[0] == rows else value
    if isinstance(value, (list, tuple)):
        return type(value)(_first_rows(item, rows, keep) for item in value)
    if isinstance(value, dict):
        return {key: _first_rows(item, rows, keep) for key, item in value.items()}
    return value


def _first_tensor(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)) and value:
        return _first_tensor(value[0])
    if hasattr(value, "sample"):
        return value.sample
    return None


def differing_modules(model: Any, call: Any, rows: int, keep: int) -> dict[str, float]:
    """{module name: max |difference|} of the modules whose own operations change their first `keep` rows when the
    call holds `rows` rows."""
    import torch

    captured: dict[str, tuple[Any, Any, Any]] = {}
    handles = []
    for name, module in model.named_modules():

        def hook(module: Any, args: Any, kwargs: Any, output: Any, name: str = name) -> None:
            captured.setdefault(name, (args, kwargs, output))

        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    with torch.no_grad():
        call(model, rows)
    for handle in handles:
        handle.remove()
    modules = dict(model.named_modules())
    differs: dict[str, float] = {}
    with torch.no_grad():
        for name, (args, kwargs, output) in captured.items():
            batched = _first_tensor(output)
            if batched is None or batched.ndim == 0 or batched.shape[0] != rows:
                continue
            alone = _first_tensor(modules[name](*_first_rows(args, rows, keep), **_first_rows(kwargs, rows, keep)))
            if alone is None or alone.shape[0] != keep:
                continue
            gap = (batched[:keep].double() - alone.double()).abs().max().item()
            if gap != 0:
                differs[name] = gap

    # the culprits are the modules none of whose children differ
    def has_differing_child(name: str) -> bool:
        prefix = f"{name}." if name else ""  # the model itself is ""
        return any(other != name and other.startswith(prefix) for other in differs)

    return {name: gap for name, gap in differs.items() if not has_differing_child(name)}


def _unet_call(unet: Any, sdxl: bool, latent: int) -> Any:
    import torch

    def call(model: Any, rows: int) -> Any:
        generator = torch.Generator().manual_seed(0)
        sample = torch.randn(rows, unet.config.in_channels, latent, latent, generator=generator)
        hidden = torch.randn(rows, 77, unet.config.cross_attention_dim, generator=generator)
        added = None
        if sdxl:
            pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
            side = float(latent * 8)
            added = {
                "text_embeds": torch.randn(rows, pooled, generator=generator),
                "time_ids": torch.tensor([[side, side, 0.0, 0.0, side, side]] * rows),
            }
        return model(sample, torch.tensor(500.0), encoder_hidden_states=hidden, added_cond_kwargs=added)

    return call


def _layers_at_real_size() -> tuple[Any, Any]:
    """SD 1.5's main operation kinds at its real widths, on 32x32 latents (a 256-pixel picture)."""
    import torch
    from diffusers.models.attention_processor import Attention

    class Layers(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(320, 320, 3, padding=1)
            self.norm = torch.nn.GroupNorm(32, 320)
            self.proj = torch.nn.Linear(320, 320)
            self.self_attention = Attention(320, heads=8, dim_head=40)
            self.cross_attention = Attention(320, cross_attention_dim=768, heads=8, dim_head=40)
            self.time = torch.nn.Linear(320, 1280)

        def forward(self, x: Any, hidden: Any, temb: Any) -> Any:
            x = self.norm(self.conv(x))
            tokens = x.flatten(2).transpose(1, 2)
            tokens = self.proj(tokens)
            tokens = self.self_attention(tokens)
            tokens = self.cross_attention(tokens, encoder_hidden_states=hidden)
            return tokens.sum() + self.time(temb).sum()

    torch.manual_seed(0)
    layers = Layers().eval()

    def call(model: Any, rows: int) -> Any:
        generator = torch.Generator().manual_seed(0)
        return model(
            torch.randn(rows, 320, 32, 32, generator=generator),
            torch.randn(rows, 77, 768, generator=generator),
            torch.randn(rows, 320, generator=generator),
        )

    return layers, call


def probe(rows_list: list[int], threads: int) -> dict[str, Any]:
    import torch

    from inferences.engine.devtools.tiny import build_tiny_pipeline

    torch.set_num_threads(threads)
    found: dict[str, Any] = {"capability": torch.backends.cpu.get_cpu_capability(), "models": {}}
    subjects = [
        ("sd1-tiny", build_tiny_pipeline(arch="sd1").unet, False),
        ("sdxl-tiny", build_tiny_pipeline(arch="sdxl").unet, True),
    ]
    for name, unet, sdxl in subjects:
        unet.eval()
        call = _unet_call(unet, sdxl, 16)
        found["models"][name] = {str(rows): _typed(unet, differing_modules(unet, call, rows, 2)) for rows in rows_list}
    layers, call = _layers_at_real_size()
    found["models"]["sd15-layers"] = {
        str(rows): _typed(layers, differing_modules(layers, call, rows, 2)) for rows in rows_list
    }
    return found


def _typed(model: Any, differs: dict[str, float]) -> dict[str, tuple[str, float]]:
    modules = dict(model.named_modules())
    return {name: (type(modules[name]).__name__, gap) for name, gap in differs.items()}


def summary(differs: dict[str, list[Any]]) -> str:
    """`Linear x12 (time_emb_proj, ...), ... (max 1.2e-07)`: the modules that differ, by type."""
    if not differs:
        return "none"
    kinds = Counter(kind for kind, _ in differs.values())
    names: dict[str, list[str]] = {}
    for name, (kind, _) in differs.items():
        short = name.rsplit(".", 1)[-1] or name
        if short not in names.setdefault(kind, []):
            names[kind].append(short)
    parts = [f"{kind} x{count} ({', '.join(names[kind][:4])})" for kind, count in sorted(kinds.items())]
    return ", ".join(parts) + f"; max {max(gap for _, gap in differs.values()):.1e}"


def cost(size: int, threads: int, runs: int = 3) -> None:
    import statistics
    import time

    import torch
    from diffusers import UNet2DConditionModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8).eval()  # SD 1.5's layout
    latent = size // 8

    def call(rows: int) -> None:
        with torch.inference_mode():
            unet(
                torch.randn(rows, 4, latent, latent),
                torch.tensor(500.0),
                encoder_hidden_states=torch.randn(rows, 77, 768),
            )

    call(2)
    whole, per_image = [], []
    for _ in range(runs):
        started = time.perf_counter()
        call(8)
        whole.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(4):
            call(2)
        per_image.append(time.perf_counter() - started)
    a, b = statistics.median(whole), statistics.median(per_image)
    print(f"SD 1.5-sized UNet, {size}x{size}, {threads} threads: 4 images in one call of 8 rows {a:.2f} s, ")
    print(f"  one call of 2 rows per image {b:.2f} s: ratio {b / a:.3f} (the price of exactness per UNet step)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cost", type=int, default=0, metavar="SIZE", help="price the one-image-per-call rule")
    args = parser.parse_args()
    if args.cost:
        cost(args.cost, args.threads)
        return
    if args.child:
        print(json.dumps(probe(args.rows, args.threads)))
        return
    settings: list[dict[str, str]] = [{"ATEN_CPU_CAPABILITY": cap} for cap in supported_capabilities()]
    settings += [{"ONEDNN_MAX_CPU_ISA": isa} for isa in ONEDNN_CAPS]
    print(f"rows compared: the first image's 2 rows alone against the same rows in a call of {args.rows} rows")
    for env in settings:
        command = [sys.executable, __file__, "--child", "--threads", str(args.threads), "--rows"]
        command += [str(rows) for rows in args.rows]
        result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, check=True)
        found = json.loads(result.stdout.strip().splitlines()[-1])
        setting = " ".join(f"{key}={value}" for key, value in env.items())
        print(f"\n{setting} (torch runs {found['capability']}):")
        for model, by_rows in found["models"].items():
            for rows, differs in by_rows.items():
                print(f"  {model:12} {rows:>2} rows: {summary(differs)}")


if __name__ == "__main__":
    main()
