"""CPU benchmark of ``salguide.kernels`` against torch's own SDPA (fp32, forward + backward).

(a) attention at (32,6,197,64) and (8,12,577,64): torch SDPA; salguide plain (default path, data
    checks on as by default on CPU, and off); salguide + mass; SDPA with the target appended to V by
    hand (the floor for the mass); the dense torch reference + mass (the CPU path before the SDPA
    paths). Each round runs every method once, starting at a rotating method; the table gives the
    medians over rounds of time and of the per-round ratio to SDPA.
(b) peak memory with mass at (1,8,2048,64) against SDPA's, and (c) N = 16384 with mass, colsum and lse:
    every method runs once in a fresh subprocess; the kernel's peak-RSS counter (VmHWM) is reset
    through /proc/self/clear_refs after the inputs are built, glibc's mmap threshold is pinned at
    64 KiB so that freed blocks leave the RSS, and the number is VmHWM minus the RSS before (Linux).
(d) training steps (AdamW, cross-entropy) of salguide's ViT and of a routed Hugging Face ViT against
    the same model on torch's SDPA attention, no plugin active; and salguide's ViT with the
    attention-concentration loss (CLS row of the last block) against its plain step. Steps of the
    compared models alternate; medians of paired ratios.

Usage: ``python benchmarks/attention_cpu.py [--parts a b c d] [--threads 1] [--output table.md]``;
``--smoke`` runs every part on tiny shapes and models (a check that the script works; no goal judged).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salguide.io import atomic_write_text
from salguide.kernels import attention, attention_stats


@dataclass(frozen=True)
class Sizes:
    kernel: list[tuple[int, ...]]  # (a) B, H, N, D
    memory: tuple[int, ...]  # (b)
    long: tuple[int, ...]  # (c)
    vit: dict[str, int]  # (d)


FULL = Sizes([(32, 6, 197, 64), (8, 12, 577, 64)], (1, 8, 2048, 64), (1, 1, 16384, 64),
             dict(img_size=224, hidden=384, depth=12, heads=6))  # ViT-S/16  # fmt: skip
SMOKE = Sizes([(2, 2, 33, 16)], (1, 2, 128, 16), (1, 1, 512, 16), dict(img_size=32, hidden=32, depth=1, heads=2))
Step = Callable[[], None]


def inputs(shape: tuple[int, ...], seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    B, H, N, D = shape
    x = {n: torch.randn(shape, generator=g).requires_grad_() for n in ("q", "k", "v")}
    x["w"] = torch.rand(B, N, generator=g)
    x["dout"], x["dmass"] = torch.randn(shape, generator=g), torch.randn(B, H, N, generator=g)
    return x


def kernel_methods(x: dict[str, Tensor]) -> dict[str, Step]:
    """Forward + backward of each method on the same inputs (gradients reset first)."""
    q, k, v, w = x["q"], x["k"], x["v"], x["w"]

    def run(outs: list[Tensor], grads: list[Tensor]) -> None:
        torch.autograd.backward(outs, grads)
        for t in (q, k, v):
            t.grad = None

    def mass(backend: str | None = None) -> Step:
        def step() -> None:
            r = attention_stats(q, k, v, target=w, backend=backend)
            run([r.out, r.mass], [x["dout"], x["dmass"]])

        return step

    def augmented() -> None:
        B, H, N, D = q.shape
        vv = torch.cat([v, w[:, None, :, None].expand(B, H, N, 1)], -1)
        o = F.scaled_dot_product_attention(F.pad(q, (0, 1)), F.pad(k, (0, 1)), vv)
        run([o[..., :D], o[..., D]], [x["dout"], x["dmass"]])

    return {
        "torch SDPA": lambda: run([F.scaled_dot_product_attention(q, k, v)], [x["dout"]]),
        "salguide (defaults: data checks on)": lambda: run([attention(q, k, v)], [x["dout"]]),
        "salguide, validate=False": lambda: run([attention(q, k, v, validate=False)], [x["dout"]]),
        "salguide + mass": mass(),
        "SDPA, V augmented by hand (+ mass)": augmented,
        "dense reference + mass (previous CPU path)": mass(backend="reference"),
    }


def paired(methods: dict[str, Step], rounds: int, baseline: str) -> dict[str, tuple[float, float]]:
    """{method: (median seconds, median of per-round ratios to ``baseline``)} over rounds that run
    every method once, in an order rotated each round (so that load from other processes hits all)."""
    names = list(methods)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds + 1):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            methods[name]()
            if r:  # round 0 warms up
                times[name].append(time.perf_counter() - start)
    return {
        n: (statistics.median(t), statistics.median(a / b for a, b in zip(t, times[baseline])))
        for n, t in times.items()
    }


def kernel_table(rounds: int, shapes: list[tuple[int, ...]]) -> list[str]:
    lines = ["| B,H,N,D | method | median ms | ratio to SDPA (median of rounds) |", "|---|---|---:|---:|"]
    for shape in shapes:
        res = paired(kernel_methods(inputs(shape)), rounds, "torch SDPA")
        lines += [f"| {','.join(map(str, shape))} | {n} | {t * 1e3:.1f} | {r:.2f}x |" for n, (t, r) in res.items()]
    return lines


MEMORY_METHODS = {
    "torch SDPA": lambda x: [F.scaled_dot_product_attention(x["q"], x["k"], x["v"])],
    "salguide + mass": lambda x: list(attention_stats(x["q"], x["k"], x["v"], target=x["w"])[:2]),
    "salguide + mass + colsum + lse": lambda x: [
        *attention_stats(x["q"], x["k"], x["v"], target=x["w"], return_colsum=True, return_lse=True)[:2]
    ],
    "dense reference + mass": lambda x: list(
        attention_stats(x["q"], x["k"], x["v"], target=x["w"], backend="reference")[:2]
    ),  # fmt: skip
}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(method: str, shape: tuple[int, ...]) -> None:
    """Entry point of the fresh subprocess: print the method's peak RSS increase (MiB) and time (s)."""
    x = inputs(shape)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before, start = _status_kib("VmRSS"), time.perf_counter()
    outs = MEMORY_METHODS[method](x)
    torch.autograd.backward(outs, [x["dout"], x["dmass"]][: len(outs)])
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - before) / 1024, "s": time.perf_counter() - start}))


def memory(method: str, shape: tuple[int, ...], threads: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", method, "--shape", *map(str, shape), "--threads", str(threads)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 16)}  # big blocks go back to the OS on free
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def memory_table(shape: tuple[int, ...], methods: list[str], threads: int) -> list[str]:
    B, H, N, _ = shape
    dense = B * H * N * N * 4 / 2**20
    res = {m: memory(m, shape, threads) for m in methods}
    base = res["torch SDPA"]["peak_mib"]
    lines = [f"Shape {','.join(map(str, shape))}; one fp32 N x N attention matrix would take {dense:.0f} MiB.", "",
             "| method | peak RSS increase, forward + backward | ratio to SDPA | time |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for m, r in res.items():
        lines.append(f"| {m} | {r['peak_mib']:.1f} MiB | {r['peak_mib'] / base:.2f}x | {r['s']:.2f} s |")
    return lines


def sdpa_attention_forward(attn: nn.Module, x: Tensor, attn_mask: Tensor | None = None, **_: object) -> Tensor:
    """timm's fused attention: the same qkv/proj weights on ``F.scaled_dot_product_attention``."""
    B, N, C = x.shape
    q, k, v = attn.qkv(x).reshape(B, N, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    o = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    return attn.proj(o.transpose(1, 2).reshape(B, N, C))


def train_step(model: nn.Module, x: Tensor, y: Tensor, loss: Callable[..., Tensor] | None = None) -> Step:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        (loss(model, x, y) if loss is not None else F.cross_entropy(model(x), y)).backward()
        opt.step()

    return step


def training_table(rounds: int, batch: int, vit: dict[str, int]) -> list[str]:
    import transformers

    from salguide.attention import route
    from salguide.attention.loss_modules import ConcentrationLoss
    from salguide.models.vit import vit_small_patch16

    torch.manual_seed(0)
    size = vit["img_size"]
    x, y = torch.randn(batch, 3, size, size), torch.arange(batch) % 10
    ours = vit_small_patch16(num_classes=10, img_size=size, embed_dim=vit["hidden"], depth=vit["depth"],
                             num_heads=vit["heads"])  # fmt: skip
    own = copy.deepcopy(ours)
    for blk in own.blocks:
        blk.attn.forward = sdpa_attention_forward.__get__(blk.attn)
    cfg = transformers.ViTConfig(
        hidden_size=vit["hidden"],
        num_hidden_layers=vit["depth"],
        num_attention_heads=vit["heads"],
        intermediate_size=4 * vit["hidden"],
        image_size=size,
        patch_size=16,
        num_labels=10,
        attn_implementation="sdpa",
    )
    hf = transformers.ViTForImageClassification(cfg)
    hf_routed = route(copy.deepcopy(hf))
    mask = torch.zeros(batch, size, size)
    mask[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    conc = ConcentrationLoss(weight=1.0, layers=[-1])

    def hf_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(model(pixel_values=x).logits, y)

    def conc_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return conc(model, x, y, mask).loss

    cases = {  # name: (baseline name, step, baseline step)
        "salguide ViT, routed, no plugin": ("salguide ViT on torch SDPA", train_step(ours, x, y),
                                            train_step(own, x, y)),
        "HF ViT, routed, no plugin": ("HF ViT, attn_implementation=sdpa", train_step(hf_routed, x, y, hf_loss),
                                      train_step(hf, x, y, hf_loss)),
        "salguide ViT + concentration loss (CLS, last block)": (
            "salguide ViT, plain step", train_step(copy.deepcopy(ours), x, y, conc_loss), train_step(ours, x, y)),
    }  # fmt: skip
    lines = [f"ViT with patch 16, width {vit['hidden']}, depth {vit['depth']}, {vit['heads']} heads; batch {batch} of "
             f"{size} x {size} images, AdamW; medians over {rounds} paired rounds.", "",
             "| model | baseline | median step | baseline step | time ratio | speed vs baseline |",
             "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, (base_name, ours_step, base_step) in cases.items():
        res = paired({name: ours_step, base_name: base_step}, rounds, base_name)
        (t, r), (tb, _) = res[name], res[base_name]
        lines.append(f"| {name} | {base_name} | {t * 1e3:.0f} ms | {tb * 1e3:.0f} ms | {r:.3f}x | {1 / r:.3f}x |")
    return lines


def machine() -> str:
    names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
             if ln.startswith("model name")] if Path("/proc/cpuinfo").exists() else []  # fmt: skip
    cpu = f"{names[0]} x{len(names)}" if names else platform.processor() or platform.machine()
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{platform.platform()}; CPU {cpu}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
            f"load average {load} at the start (other jobs share the machine)")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=["a", "b", "c", "d"], default=["a", "b", "c", "d"])
    parser.add_argument("--rounds", type=int, default=7, help="paired rounds per kernel table")
    parser.add_argument("--train-rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="training batch (part d)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, help="also write the tables here")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and models, one round")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        memory_child(args.child, tuple(args.shape))
        return
    size = SMOKE if args.smoke else FULL
    rounds, train_rounds, batch = (1, 1, 2) if args.smoke else (args.rounds, args.train_rounds, args.batch)
    lines = [f"Machine: {machine()}", ""]
    parts = {
        "a": lambda: ["(a) attention, fp32, forward + backward", ""] + kernel_table(rounds, size.kernel),
        "b": lambda: ["(b) peak memory", ""] + memory_table(size.memory, list(MEMORY_METHODS), args.threads),
        "c": lambda: ["(c) long sequence", ""] + memory_table(size.long, list(MEMORY_METHODS)[:3], args.threads),
        "d": lambda: ["(d) training steps", ""] + training_table(train_rounds, batch, size.vit),
    }
    print(lines[0], flush=True)
    for part in args.parts:
        new = parts[part]() + [""]
        print("\n".join(new), flush=True)
        lines += new
    if args.output:
        atomic_write_text(args.output, "\n".join(lines))


if __name__ == "__main__":
    main()
