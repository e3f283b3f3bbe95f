"""Training-step cost of each input-saliency loss relative to plain cross-entropy training.

One step = forward, loss, backward, SGD step, on a fixed batch. Models: the DecoyDigits MLP
(400-50-50-10, batch 64, 20x20) and ``SmallCNN(width=16)`` (batch 32, 1x20x20). Variants run
round-robin (so machine load hits all alike); the reported time is the median over ``--steps``
measured steps after ``--warmup`` steps, and the ratio is to the plain step of the same model.
RRR and the energy penalty differentiate through an input gradient (double backward); SGT needs an
input gradient (no double backward) and a second forward/backward on the masked batch.

Usage: ``python benchmarks/input_saliency.py [--steps 20] [--threads 2]`` (prints a markdown table).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from salguide.inputs import EnergyLoss, RRRLoss, SGTLoss
from salguide.models import SmallCNN


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(400, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 10))


def step_fn(model: nn.Module, variant: str, batch: tuple[torch.Tensor, ...]) -> Callable[[], None]:
    x, y, mask = batch
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    losses = {
        "rrr": RRRLoss(10.0),
        "sgt": SGTLoss(1.0, seed=0),
        "energy (gradient)": EnergyLoss(1.0),
        "energy (Grad-CAM)": EnergyLoss(1.0, saliency="gradcam", layer="features.3"),
    }

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y) if variant == "plain" else losses[variant](model, x, y, mask).loss
        loss.backward()
        opt.step()

    return step


def bench(
    name: str, make: Callable[[], nn.Module], batch_size: int, variants: list[str], steps: int, warmup: int
) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 1, 20, 20, generator=g)
    y = torch.randint(0, 10, (batch_size,), generator=g)
    mask = torch.zeros_like(x)
    mask[..., :4, :4] = 1
    fns = {}
    for v in variants:
        torch.manual_seed(0)
        fns[v] = step_fn(make(), v, (x, y, mask))
    times: dict[str, list[float]] = {v: [] for v in variants}
    for i in tqdm(range(warmup + steps), desc=name, leave=False):
        for v in variants:
            t0 = time.perf_counter()
            fns[v]()
            if i >= warmup:
                times[v].append(time.perf_counter() - t0)
    plain = statistics.median(times["plain"])
    return [
        {
            "model": name,
            "variant": v,
            "ms": 1e3 * statistics.median(times[v]),
            "ratio": statistics.median(times[v]) / plain,
        }
        for v in variants
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = ["plain", "rrr", "sgt", "energy (gradient)"]
    rows = []
    if "mlp" in args.models:
        rows += bench("MLP 400-50-50-10, B=64", mlp, 64, base, args.steps, args.warmup)
    if "cnn" in args.models:
        rows += bench(
            "SmallCNN(16), B=32", lambda: SmallCNN(width=16), 32, base + ["energy (Grad-CAM)"], args.steps, args.warmup
        )
    print(
        f"Machine: {platform.machine()}, {args.threads} torch thread(s), torch {torch.__version__}; "
        f"median of {args.steps} steps.\n"
    )
    print("| model | loss | ms / step | x plain |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['variant']} | {r['ms']:.2f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
