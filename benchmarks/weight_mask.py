"""Benchmark of the weight-saliency core: mask selection and the masked-update training-step overhead.

(a) Selecting the top ``ratio`` of ~11 M ResNet-18 scores: ``salguide.weights.topk_mask`` (radix
    select, no sort) vs a SalUn-style double argsort (concatenate, argsort, argsort the positions
    into ranks, threshold by rank). Time is the median of ``--repeats`` runs in this process. Peak
    memory is measured in a fresh subprocess per method: the kernel's peak-RSS counter (VmHWM) is
    reset through /proc/self/clear_refs after the scores are built, the method runs once, and the
    reported number is VmHWM minus the RSS before the run (Linux only). glibc's mmap threshold is
    pinned at 64 KiB in that subprocess so that freed blocks leave the RSS and it tracks live memory.
(b) One SGD step (momentum 0.9, weight decay 5e-4) of ResNet-18 on a batch of 32 32x32 images,
    plain vs with ``salguide.weights.MaskedUpdate`` attached; steps of the two alternate so that
    load from other processes hits both alike; median of ``--steps`` steps after warm-up.

Prints a markdown table with the machine. Usage: ``python benchmarks/weight_mask.py [--parts a b]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from salguide.models import resnet18
from salguide.weights import WeightMask, topk_mask


def resnet18_scores(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random non-negative scores with ResNet-18's parameter names and shapes (CIFAR variant)."""
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=gen) for n, p in resnet18().named_parameters()}


def double_argsort_mask(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """SalUn-style baseline: rank every score with two argsorts of the concatenation, keep top ranks."""
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    k = max(1, round(ratio * flat.numel()))
    ranks = torch.argsort(torch.argsort(flat, descending=True))
    keep = ranks < k
    return {n: m.view(s.shape) for (n, s), m in zip(scores.items(), keep.split([s.numel() for s in scores.values()]))}


METHODS: dict[str, Callable[[dict[str, torch.Tensor], float], dict[str, torch.Tensor]]] = {
    "salguide topk_mask (global)": lambda s, r: topk_mask(s, r, scope="global"),
    "salguide topk_mask (layer)": lambda s, r: topk_mask(s, r, scope="layer"),
    "double argsort (SalUn-style)": double_argsort_mask,
}
BASELINE = "double argsort (SalUn-style)"


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_child(method: str, ratio: float) -> None:
    """Entry point of the fresh subprocess: print the method's peak RSS increase in MiB as JSON."""
    scores = resnet18_scores()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    METHODS[method](scores, ratio)
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - before) / 1024}))


def peak_memory(method: str, ratio: float, threads: int) -> float:
    cmd = [sys.executable, __file__, "--child", method, "--ratio", str(ratio), "--threads", str(threads)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 16)}  # big blocks go back to the OS on free
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function; the functions take turns so background load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in tqdm(range(repeats + 1), desc="selection", leave=False):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if i:  # the first round is warm-up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def selection_table(ratio: float, repeats: int, threads: int) -> list[str]:
    scores = resnet18_scores()
    numel = sum(s.numel() for s in scores.values())
    reference = topk_mask(scores, ratio)
    base = double_argsort_mask(scores, ratio)
    same = all(torch.equal(reference[n], base[n]) for n in scores)  # sanity of the comparison
    seconds = median_seconds({name: lambda f=fn: f(scores, ratio) for name, fn in METHODS.items()}, repeats)
    rows = {name: (seconds[name], peak_memory(name, ratio, threads)) for name in METHODS}
    t0, m0 = rows[BASELINE]
    lines = [
        f"### (a) mask selection, {numel:,} ResNet-18 scores, ratio {ratio} (global masks identical: {same})",
        "",
        "| method | median time | speed-up vs argsort | peak RSS increase | memory vs argsort |",
        "|---|---|---|---|---|",
    ]
    for name, (t, m) in rows.items():
        lines.append(f"| {name} | {t * 1e3:.1f} ms | {t0 / t:.1f}x | {m:.1f} MiB | {m / m0:.2f}x |")
    return lines


def training_table(steps: int, batch: int) -> list[str]:
    from salguide.weights import MaskedUpdate

    if not hasattr(MaskedUpdate, "attach"):
        return ["### (b) masked-update overhead", "", "not measured: `MaskedUpdate.attach` is not implemented yet"]
    torch.manual_seed(0)
    plain = resnet18()
    masked = resnet18()
    masked.load_state_dict(plain.state_dict())
    mask = WeightMask.from_scores({n: torch.rand(p.shape) for n, p in masked.named_parameters()}, 0.5)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

    def make_step(model: torch.nn.Module) -> tuple[torch.optim.Optimizer, Callable[[], float]]:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

        def step() -> float:
            """One training step; returns the seconds spent in ``optimizer.step()`` (hooks included)."""
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            start = time.perf_counter()
            opt.step()
            return time.perf_counter() - start

        return opt, step

    _, plain_step = make_step(plain)
    masked_opt, masked_step = make_step(masked)
    handle = MaskedUpdate(masked.named_parameters(), mask).attach(masked_opt)
    steps_of = {"plain": plain_step, "masked": masked_step}
    total: dict[str, list[float]] = {"plain": [], "masked": []}
    opt_only: dict[str, list[float]] = {"plain": [], "masked": []}
    for i in tqdm(range(steps + 2), desc="train steps", leave=False):
        for name in ("plain", "masked") if i % 2 else ("masked", "plain"):  # alternate who goes first
            start = time.perf_counter()
            in_step = steps_of[name]()
            if i >= 2:  # two warm-up steps each
                total[name].append(time.perf_counter() - start)
                opt_only[name].append(in_step)
    handle.remove()
    t = {k: statistics.median(v) for k, v in total.items()}
    o = {k: statistics.median(v) for k, v in opt_only.items()}
    return [
        f"### (b) one training step, ResNet-18, batch {batch}, 32x32, SGD momentum + weight decay, mask ratio 0.5",
        "",
        "| | median full step | overhead | median `optimizer.step()` (hooks included) |",
        "|---|---|---|---|",
        f"| plain | {t['plain'] * 1e3:.1f} ms | - | {o['plain'] * 1e3:.1f} ms |",
        f"| with MaskedUpdate | {t['masked'] * 1e3:.1f} ms | {100 * (t['masked'] / t['plain'] - 1):+.1f}% "
        f"| {o['masked'] * 1e3:.1f} ms (+{(o['masked'] - o['plain']) / t['plain'] * 100:.1f}% of a step) |",
    ]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = f"{names[0]} x{len(names)}" if names else cpu
    return f"{platform.platform()}; CPU {cpu}; torch {torch.__version__} ({torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=["a", "b"], default=["a", "b"])
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per selection method")
    parser.add_argument("--steps", type=int, default=15, help="timed training steps per variant")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        peak_memory_child(args.child, args.ratio)
        return
    lines = [f"Machine: {machine()}", ""]
    if "a" in args.parts:
        lines += selection_table(args.ratio, args.repeats, args.threads) + [""]
    if "b" in args.parts:
        lines += training_table(args.steps, args.batch) + [""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
