"""Benchmark of ``salguide.kernels.attention``: forward + backward time and peak memory against
SDPA flash (no mask, the 1.0x baseline), SDPA with a bool key mask, compiled FlexAttention (block
mask; the mass by a second pass over the weights), eager softmax + mass, and gather + flash.

Each row is one forward and one backward (``torch.autograd.backward`` on every output with random
upstream gradients); time is the median of Triton's ``do_bench`` on CUDA (of ``--repeats`` runs on
CPU); peak memory is the CUDA allocator's peak during one run minus what was allocated before it.
"keep 0.5" keeps a random half of each sample's keys (same subset as mask and as index).

GPU (the real use):  python benchmarks/attention.py [--dtype bf16] [--output docs/benchmarks_attention_gpu.md]
CPU sanity check:     python benchmarks/attention.py --smoke
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import create_block_mask, flex_attention
from tqdm import tqdm

from salguide.io import atomic_write_text
from salguide.kernels import attention, attention_stats

SHAPES = [(128, 12, 197, 64), (32, 12, 577, 64), (8, 16, 2048, 64), (2, 32, 8192, 128)]
SMOKE_SHAPES = [(2, 2, 64, 32)]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Inputs:
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    w: torch.Tensor  # per-key target weights [B, N]
    mask: torch.Tensor  # bool [B, N], the kept keys
    index: torch.Tensor  # int [B, N * keep], the same keys


def make_inputs(shape: tuple[int, int, int, int], keep: float, dtype: torch.dtype, device: str) -> Inputs:
    B, H, N, D = shape
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    w = torch.rand(B, N, device=device, requires_grad=True)
    nk = max(1, round(N * keep))
    index = torch.rand(B, N, device=device).argsort(1)[:, :nk].sort(1).values
    mask = torch.zeros(B, N, dtype=torch.bool, device=device).scatter(1, index, True)
    return Inputs(q, k, v, w, mask, index)


def leaves(x: Inputs) -> list[torch.Tensor]:
    return [x.q, x.k, x.v, x.w]


def methods(x: Inputs, keep: float, compiled_flex: Callable | None) -> dict[str, Callable[[], list[torch.Tensor]]]:
    """name -> forward returning the tensors to back-propagate through (no Flex without a compiled one:
    FlexAttention has no backward on CPU)."""
    B, H, N, D = x.q.shape
    scale = D**-0.5

    def flash():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return [F.scaled_dot_product_attention(x.q, x.k, x.v)]

    def eager_mass():
        s = (x.q @ x.k.transpose(-1, -2)).float() * scale
        if keep < 1:
            s = s.masked_fill(~x.mask[:, None, None, :], -math.inf)
        p = torch.softmax(s, -1)
        return [p.to(x.v.dtype) @ x.v, (p * x.w[:, None, None, :]).sum(-1)]

    def flex_mass():
        """Flex with a key-mask block mask; the mass is a second flex pass whose values are the weights."""
        block_mask = None
        if keep < 1:
            keys = x.mask
            block_mask = create_block_mask(lambda b, h, qi, kv: keys[b, kv], B, None, N, N, device=x.q.device)
        out = compiled_flex(x.q, x.k, x.v, block_mask=block_mask)
        w = x.w[:, None, :, None].expand(B, H, N, 16).to(x.q.dtype).contiguous()
        return [out, compiled_flex(x.q, x.k, w, block_mask=block_mask)[..., 0]]

    def ours_mass(validate=False, **keys):
        r = attention_stats(x.q, x.k, x.v, target=x.w, validate=validate, **keys)
        return [r.out, r.mass]

    flex = {} if compiled_flex is None else {"Flex + 2-pass mass": flex_mass}
    if keep == 1:
        return {
            "SDPA flash": flash,
            "salguide + mass": ours_mass,
            "salguide + mass, validate=True": lambda: ours_mass(validate=True),
            "salguide, no mass": lambda: [attention(x.q, x.k, x.v, validate=False)],
            **flex,
            "eager softmax + mass": eager_mass,
        }

    def sdpa_mask():
        return [F.scaled_dot_product_attention(x.q, x.k, x.v, attn_mask=x.mask[:, None, None, :])]

    def gather_flash():
        rows = x.index[:, None, :, None].expand(B, H, x.index.shape[1], D)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return [F.scaled_dot_product_attention(x.q, x.k.gather(2, rows), x.v.gather(2, rows))]

    return {
        "SDPA bool key mask": sdpa_mask,
        "salguide key_index + mass": lambda: ours_mass(key_index=x.index),
        "salguide key_index, no mass": lambda: [attention(x.q, x.k, x.v, key_index=x.index, validate=False)],
        "salguide key_mask + mass": lambda: ours_mass(key_mask=x.mask),
        "gather + flash": gather_flash,
        **flex,
        "eager softmax + mass": eager_mass,
    }


def measure(forward: Callable[[], list[torch.Tensor]], leaves: list[torch.Tensor], repeats: int) -> tuple[float, float]:
    """(median ms, peak MB above the memory allocated before the run; NaN on CPU) of forward+backward.
    The gradients of ``leaves`` are reset before every run so that none accumulates."""

    def step():
        for t in leaves:
            t.grad = None
        outs = forward()
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])

    step()  # compile / autotune outside the measurement
    if not torch.cuda.is_available():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(1e3 * (time.perf_counter() - start))
        return statistics.median(times), math.nan
    import triton.testing

    ms = triton.testing.do_bench(step, warmup=10, rep=max(50, repeats), return_mode="median")
    for t in leaves:
        t.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return ms, (torch.cuda.max_memory_allocated() - base) / 2**20


def run(shapes, keeps, dtype, device, repeats) -> list[tuple]:
    compiled_flex = torch.compile(flex_attention) if device == "cuda" else None
    rows, baseline = [], {}
    cases = [(s, keep) for s in shapes for keep in keeps]
    for shape, keep in tqdm(cases, desc="attention benchmark"):
        x = make_inputs(shape, keep, dtype, device)
        flash_inputs = x if keep == 1 else make_inputs(shape, 1.0, dtype, device)
        if shape not in baseline:
            flash = methods(flash_inputs, 1.0, compiled_flex)["SDPA flash"]
            baseline[shape] = measure(flash, leaves(flash_inputs), repeats)
        for name, fn in methods(x, keep, compiled_flex).items():
            try:
                ms, mb = baseline[shape] if name == "SDPA flash" else measure(fn, leaves(x), repeats)
            except torch.OutOfMemoryError:
                ms, mb = math.nan, math.nan
                torch.cuda.empty_cache()
            rows.append((shape, keep, name, ms, mb, ms / baseline[shape][0], mb / baseline[shape][1]))
    return rows


def table(rows, dtype_name: str, device: str) -> str:
    import triton

    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    lines = [
        f"Device: {name}; torch {torch.__version__}; triton {triton.__version__}; dtype {dtype_name}; "
        "forward + backward; ratios to SDPA flash (no mask) at the same shape, same run.",
        "",
        "| B,H,N,D | keep | method | ms | x flash | peak MB | x flash peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for shape, keep, method, ms, mb, ratio, mem_ratio in rows:
        lines.append(
            f"| {','.join(map(str, shape))} | {keep} | {method} | {ms:.3f} | {ratio:.2f} | {_num(mb, '.0f')} "
            f"| {_num(mem_ratio, '.2f')} |"
        )
    verdict = goals(rows) if device == "cuda" else "Goals are judged on a GPU only (CPU smoke run)."
    return "\n".join(lines) + "\n\n" + verdict + "\n"


def _num(x: float, fmt: str) -> str:
    return "n/a" if math.isnan(x) else format(x, fmt)


def goals(rows) -> str:
    """The issue's targets, each marked met or missed with the measured ratio."""
    found = {(r[0], r[1], r[2]): r for r in rows}
    out = ["Goals:"]
    for shape in dict.fromkeys(r[0] for r in rows):
        mass = found.get((shape, 1.0, "salguide + mass"))
        if mass:
            ok = mass[5] <= 1.3 and mass[6] <= 1.1
            out.append(f"- {shape} attention + mass: {mass[5]:.2f}x time (<= 1.3), {mass[6]:.2f}x memory (<= 1.1): "
                       f"{'met' if ok else 'MISSED'}")  # fmt: skip
        subset = found.get((shape, 0.5, "salguide key_index + mass"))
        if subset:
            limit = 1.0 if shape[2] <= 577 else 0.6
            out.append(f"- {shape} keep 0.5 via key_index: {subset[5]:.2f}x (<= {limit}): "
                       f"{'met' if subset[5] <= limit else 'MISSED'}")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU (sanity check, no GPU)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--output", help="also write the markdown table to this file (atomically)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if device == "cpu" and not args.smoke:
        parser.error("no CUDA device: the benchmark needs a GPU (use --smoke for a CPU sanity run)")
    dtype_name = "fp32" if args.smoke else args.dtype
    repeats = 3 if args.smoke else args.repeats
    rows = run(SMOKE_SHAPES if args.smoke else SHAPES, (1.0, 0.5), DTYPES[dtype_name], device, repeats)
    text = table(rows, dtype_name, device)
    print(text)
    if args.output:
        atomic_write_text(args.output, text)


if __name__ == "__main__":
    main()
