"""GPU benchmark of ``salguide.kernels.attention``: forward + backward time and peak memory against
SDPA flash (no mask, the 1.0x baseline) and the other ways to get the same numbers.

Rows per shape (keep 1.0): SDPA flash; SDPA flash with the target appended to V (the mass as an extra
output column); FlexAttention plain and with a second pass for the mass; salguide's Triton kernels
end to end (public API) and kernels only (launches without autograd or custom-op dispatch); eager
softmax + mass. With keep 0.5 (a random half of each sample's keys, the same set as mask, index and
block mask): SDPA with a bool mask, gather + flash, salguide by key_index / key_mask, Flex with a block
mask. Every FlexAttention is compiled for its shape (``dynamo.reset()`` between shapes,
``fullgraph=True`` so a fallback to eager is an error, never a silent slow row); its block mask is
built before the timing.

Time is the median of Triton's ``do_bench``; peak memory is the CUDA allocator's peak during one run
minus what was allocated before it. Each row is appended to ``--output`` as soon as it is measured,
so a killed run keeps what it measured. ``--case I`` runs one (shape, keep) case: GPU sessions run the
cases as separate steps (``benchmarks/gpu_session.sh``).

GPU:              python benchmarks/attention.py [--case 0] [--dtype bf16] [--output gpu_results/attention.md]
CPU sanity check: python benchmarks/attention.py --smoke
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from salguide.kernels import attention, attention_stats

SHAPES = [(128, 12, 197, 64), (32, 12, 577, 64), (8, 16, 2048, 64), (2, 32, 8192, 128)]
KEEPS = (1.0, 0.5)
CASES = [(shape, keep) for shape in SHAPES for keep in KEEPS]
SMOKE_CASES = [((2, 1, 32, 16), 1.0), ((2, 1, 32, 16), 0.5)]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
HEADER = ["| B,H,N,D | keep | method | ms | x flash | peak MB | x flash peak |", "|---|---|---|---|---|---|---|"]


@dataclass
class Inputs:
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    w: torch.Tensor  # per-key target weights [B, N]
    mask: torch.Tensor  # bool [B, N], the kept keys
    index: torch.Tensor  # int [B, N * keep], the same keys

    @property
    def leaves(self) -> list[torch.Tensor]:
        return [self.q, self.k, self.v, self.w]


def make_inputs(shape: tuple[int, int, int, int], keep: float, dtype: torch.dtype, device: str) -> Inputs:
    B, H, N, D = shape
    g = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, generator=g).requires_grad_() for _ in range(3))
    w = torch.rand(B, N, device=device, generator=g).requires_grad_()
    nk = max(1, round(N * keep))
    index = torch.rand(B, N, device=device, generator=g).argsort(1)[:, :nk].sort(1).values
    mask = torch.zeros(B, N, dtype=torch.bool, device=device).scatter(1, index, True)
    return Inputs(q, k, v, w, mask, index)


def ours(x: Inputs, **kwargs) -> list[torch.Tensor]:
    """salguide through its public API (the end-to-end cost a user pays); out and, with a target, mass."""
    if "target" in kwargs:
        r = attention_stats(x.q, x.k, x.v, validate=False, **kwargs)
        return [r.out, r.mass]
    return [attention(x.q, x.k, x.v, validate=False, **kwargs)]


def kernels_only(x: Inputs, **keys) -> Callable[[], None]:
    """salguide's Triton forward and backward launched directly (no autograd, no custom-op dispatch,
    key set built once): what the kernels cost without the host-side layers."""
    from salguide.kernels.triton_backward import triton_backward
    from salguide.kernels.triton_common import key_set
    from salguide.kernels.triton_forward import triton_forward

    q, k, v, w = (t.detach() for t in x.leaves)
    ks = key_set(keys.get("key_mask"), keys.get("key_index"), False, q.shape[2])
    scale = q.shape[-1] ** -0.5
    dout, dmass = torch.ones_like(q), torch.ones_like(w[:, None, :].expand(-1, q.shape[1], -1).float())
    dlse = torch.zeros_like(dmass)

    def step() -> None:
        out, mass, lse, _ = triton_forward(q, k, v, ks, None, w, scale, False)
        triton_backward(dout, dmass, dlse, q, k, v, out, mass, lse, ks, None, w, scale, False, True)

    return step


def sdpa_v_augmented(x: Inputs, attn_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The mass as the extra output column of SDPA over [v, w] (padded to a multiple of 8 for flash)."""
    B, H, N, D = x.q.shape
    pad = -(D + 1) % 8
    extra = [x.w[:, None, :, None].expand(B, H, N, 1).to(x.v.dtype)]
    v = torch.cat([x.v, *extra, x.v.new_zeros(B, H, N, pad)], -1)
    o = F.scaled_dot_product_attention(x.q, x.k, v, attn_mask=attn_mask)
    return [o[..., :D], o[..., D]]


def methods(x: Inputs, keep: float, flex: Callable | None) -> dict[str, Callable[[], list[torch.Tensor]] | Callable]:
    """name -> forward returning the tensors to back-propagate through (or, for kernel-only rows, a step)."""
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

    rows: dict[str, Callable] = {}
    if keep == 1:
        rows |= {
            "SDPA flash": flash,
            "SDPA flash, V+w (mass)": lambda: sdpa_v_augmented(x),
            "salguide triton + mass": lambda: ours(x, target=x.w, backend="triton"),
            "salguide triton + mass, kernels only": kernels_only(x),
            "salguide triton, no mass": lambda: ours(x, backend="triton"),
            "salguide sdpa + mass": lambda: ours(x, target=x.w, backend="sdpa"),
            "salguide auto, no mass": lambda: ours(x),
        }
    else:
        rows |= {
            "SDPA bool key mask": lambda: [F.scaled_dot_product_attention(x.q, x.k, x.v,
                                                                           attn_mask=x.mask[:, None, None, :])],
            "gather + flash": lambda: _gather_flash(x),
            "salguide key_index + mass": lambda: ours(x, target=x.w, key_index=x.index, backend="triton"),
            "salguide key_index + mass, kernels only": kernels_only(x, key_index=x.index),
            "salguide key_index, no mass": lambda: ours(x, key_index=x.index, backend="triton"),
            "salguide sdpa key_index, no mass": lambda: ours(x, key_index=x.index, backend="sdpa"),
            "salguide key_mask + mass": lambda: ours(x, target=x.w, key_mask=x.mask, backend="triton"),
            "salguide key_mask, no mass": lambda: ours(x, key_mask=x.mask, backend="triton"),
            "salguide sdpa key_mask, no mass": lambda: ours(x, key_mask=x.mask, backend="sdpa"),
            "salguide sdpa key_index + mass": lambda: ours(x, target=x.w, key_index=x.index, backend="sdpa"),
        }  # fmt: skip
    if flex is not None:
        from torch.nn.attention.flex_attention import create_block_mask

        block_mask = None
        if keep < 1:
            keys = x.mask
            block_mask = create_block_mask(lambda b, h, qi, kv: keys[b, kv], B, None, N, N, device=x.q.device)
        w16 = x.w[:, None, :, None].expand(B, H, N, 16).to(x.q.dtype)
        rows["Flex" + (" block mask" if keep < 1 else "")] = lambda: [flex(x.q, x.k, x.v, block_mask=block_mask)]
        rows["Flex + 2-pass mass"] = lambda: [flex(x.q, x.k, x.v, block_mask=block_mask),
                                              flex(x.q, x.k, w16, block_mask=block_mask)[..., 0]]  # fmt: skip
    rows["eager softmax + mass"] = eager_mass
    return rows


def _gather_flash(x: Inputs) -> list[torch.Tensor]:
    B, H, N, D = x.q.shape
    rows = x.index[:, None, :, None].expand(B, H, x.index.shape[1], D)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return [F.scaled_dot_product_attention(x.q, x.k.gather(2, rows), x.v.gather(2, rows))]


def measure(fn: Callable, leaves: list[torch.Tensor], repeats: int) -> tuple[float, float]:
    """(median ms, peak MB above what was allocated before; NaN on CPU) of one forward + backward.
    ``fn`` returns the tensors to back-propagate through, or None when it runs its own backward."""
    cuda = leaves[0].is_cuda

    def step():
        for t in leaves:
            t.grad = None
        outs = fn()
        if outs is not None:
            torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])

    step()  # compile / autotune outside the measurement
    if not cuda:
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


def compiled_flex() -> Callable:
    """FlexAttention compiled afresh (one graph per shape: no recompile limit, no eager fallback)."""
    import torch._dynamo
    from torch.nn.attention.flex_attention import flex_attention

    torch._dynamo.reset()
    return torch.compile(flex_attention, dynamic=False, fullgraph=True)


def run_case(shape, keep, dtype, device, repeats, emit: Callable[[str], None]) -> None:
    """Measure every method of one case and ``emit`` each table row as soon as it is measured."""
    flex = compiled_flex() if device == "cuda" else None
    base_inputs = make_inputs(shape, 1.0, dtype, device)
    base = measure(methods(base_inputs, 1.0, None)["SDPA flash"], base_inputs.leaves, repeats)
    x = base_inputs if keep == 1 else make_inputs(shape, keep, dtype, device)
    for name, fn in methods(x, keep, flex).items():
        try:
            ms, mb = base if name == "SDPA flash" else measure(fn, x.leaves, repeats)
        except torch.OutOfMemoryError:
            ms, mb = math.nan, math.nan
            torch.cuda.empty_cache()
        except Exception as e:  # a failing method is a row, not a lost run
            emit(f"| {','.join(map(str, shape))} | {keep} | {name} | failed: {type(e).__name__}: "
                 f"{str(e).splitlines()[0][:120]} | | | |")  # fmt: skip
            continue
        emit(f"| {','.join(map(str, shape))} | {keep} | {name} | {ms:.3f} | {ms / base[0]:.2f} | {_num(mb, '.0f')} "
             f"| {_num(mb / base[1] if base[1] else math.nan, '.2f')} |")  # fmt: skip


def _num(x: float, fmt: str) -> str:
    return "n/a" if math.isnan(x) else format(x, fmt)


def machine(device: str, dtype_name: str) -> str:
    import triton

    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    return (f"Device: {name}; torch {torch.__version__}; triton {triton.__version__}; dtype {dtype_name}; "
            "forward + backward; ratios to SDPA flash (no mask) at the same shape, same run.")  # fmt: skip


def goals(table: str) -> str:
    """The issue's targets, each marked met or missed, from a finished table's rows."""
    found = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0][:1].isdigit() and not cells[3].startswith("failed"):
            found[(cells[0], float(cells[1]), cells[2])] = (float(cells[4]), cells[6])
    out = ["Goals:"]
    for shape in dict.fromkeys(key[0] for key in found):
        if (mass := found.get((shape, 1.0, "salguide triton + mass"))) is not None:
            mem = float(mass[1]) if mass[1] != "n/a" else math.nan
            ok = mass[0] <= 1.3 and mem <= 1.1
            out.append(f"- ({shape}) attention + mass: {mass[0]:.2f}x time (<= 1.3), {mem:.2f}x memory (<= 1.1): "
                       f"{'met' if ok else 'MISSED'}")  # fmt: skip
        if (sub := found.get((shape, 0.5, "salguide key_index + mass"))) is not None:
            limit = 1.0 if int(shape.split(",")[2]) <= 577 else 0.6
            out.append(f"- ({shape}) keep 0.5 via key_index: {sub[0]:.2f}x (<= {limit}): "
                       f"{'met' if sub[0] <= limit else 'MISSED'}")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny shapes (sanity check; on the GPU when there is one, else on CPU in fp32)",
    )
    parser.add_argument("--case", type=int, action="append", help=f"case index 0..{len(CASES) - 1} (repeatable)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--output", help="append the markdown rows to this file as they are measured")
    parser.add_argument("--goals", metavar="TABLE", help="print the goal verdicts of a finished table and exit")
    args = parser.parse_args()
    if args.goals:
        print(goals(open(args.goals).read()))
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        parser.error("no CUDA device: the benchmark needs a GPU (use --smoke for a CPU sanity run)")
    dtype_name = "fp32" if device == "cpu" else args.dtype  # SDPA flash, the baseline, has no fp32 on CUDA
    cases = SMOKE_CASES if args.smoke else [CASES[i] for i in (args.case or range(len(CASES)))]
    repeats = 1 if args.smoke else args.repeats
    fresh = not (args.output and os.path.exists(args.output) and os.path.getsize(args.output))
    head = ([machine(device, dtype_name), ""] + HEADER) if fresh else []

    def emit(line: str) -> None:
        print(line, flush=True)
        if args.output:
            with open(args.output, "a") as f:
                f.write(line + "\n")

    for line in head:
        emit(line)
    for shape, keep in cases:
        run_case(shape, keep, DTYPES[dtype_name], device, repeats, emit)


if __name__ == "__main__":
    main()
