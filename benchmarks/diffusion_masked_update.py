"""Benchmark: the masked update's cost on a diffusion training step (issue 13, point 8: ≤ 5 % of a step).

The DDPM of ``experiment=unlearn_ddpm_digits`` (diffusers ``UNet2DModel``, 16x16, 11 class embeddings) trains
one noise-prediction step on a batch of ``--batch`` images with AdamW (the ``DiffusionModule`` optimizer),
plain vs with ``salguide.weights.MaskedUpdate`` (a ratio-0.5 mask: gradients zeroed before the step, θ₀ written
back and optimizer state zeroed after it) attached; the two variants alternate, who goes first alternating too,
median of ``--steps`` steps after 2 warm-up steps each. ``optimizer.step()`` is timed on its own, hooks
included. For scale, one SalUn unlearning step (forget term: two UNet calls, one without gradient; plus the
retain MSE) is timed as well.

Usage: ``python benchmarks/diffusion_masked_update.py [--steps 15 --batch 64 --threads 1]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from tqdm import tqdm
from weight_mask import machine

from salguide.diffusion import DiffusionModule, SalUnObjective, class_unet, denoising_loss
from salguide.weights import MaskedUpdate, WeightMask


def model() -> DiffusionModule:
    torch.manual_seed(0)
    return DiffusionModule(class_unet(10, sample_size=16, block_out_channels=(32, 64)), num_train_timesteps=200)


def make_step(
    m: DiffusionModule, loss_fn: Callable[[DiffusionModule], torch.Tensor]
) -> tuple[torch.optim.Optimizer, Callable[[], float]]:
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss_fn(m).backward()
        start = time.perf_counter()
        opt.step()
        return time.perf_counter() - start

    return opt, step


def run(steps: int, batch: int) -> list[str]:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, 1, 16, 16, generator=gen), torch.randint(0, 10, (batch,), generator=gen)
    fx, fy = torch.randn(batch, 1, 16, 16, generator=gen), torch.zeros(batch, dtype=torch.long)
    plain, masked, salun = model(), model(), model()
    retain = lambda m: denoising_loss(m.eps, m.noise_scheduler, x, y)  # noqa: E731
    obj = SalUnObjective(beta=1.0)

    def salun_loss(m: DiffusionModule) -> torch.Tensor:
        return obj.forget_loss(m.eps, None, m.noise_scheduler, 10, 10, fx, fy) + retain(m)

    mask = WeightMask.from_scores({n: torch.rand(p.shape, generator=gen) for n, p in masked.named_parameters()}, 0.5)
    steps_of = {"plain": make_step(plain, retain)[1]}
    masked_opt, steps_of["masked"] = make_step(masked, retain)
    handle = MaskedUpdate(masked.named_parameters(), mask).attach(masked_opt)
    steps_of["salun"] = make_step(salun, salun_loss)[1]
    total: dict[str, list[float]] = {k: [] for k in steps_of}
    opt_only: dict[str, list[float]] = {k: [] for k in steps_of}
    order = list(steps_of)
    for i in tqdm(range(steps + 2), desc="diffusion steps", leave=False):
        for name in order if i % 2 else order[::-1]:
            start = time.perf_counter()
            in_step = steps_of[name]()
            if i >= 2:
                total[name].append(time.perf_counter() - start)
                opt_only[name].append(in_step)
    handle.remove()
    t = {k: statistics.median(v) for k, v in total.items()}
    o = {k: statistics.median(v) for k, v in opt_only.items()}
    n_params = sum(p.numel() for p in plain.parameters())
    return [
        f"### DDPM training step, UNet2DModel {n_params / 1e6:.2f} M parameters, batch {batch}, 16x16, AdamW, mask ratio 0.5",
        "",
        "| | median full step | vs plain | median `optimizer.step()` (hooks included) |",
        "|---|---|---|---|",
        f"| plain DDPM step | {t['plain'] * 1e3:.1f} ms | - | {o['plain'] * 1e3:.1f} ms |",
        f"| with MaskedUpdate | {t['masked'] * 1e3:.1f} ms | {100 * (t['masked'] / t['plain'] - 1):+.1f}% "
        f"| {o['masked'] * 1e3:.1f} ms (hooks: {(o['masked'] - o['plain']) / t['plain'] * 100:+.1f}% of a plain step) |",
        f"| SalUn step (forget + retain, no mask) | {t['salun'] * 1e3:.1f} ms | {100 * (t['salun'] / t['plain'] - 1):+.1f}% "
        f"| {o['salun'] * 1e3:.1f} ms |",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("\n".join([f"Machine: {machine()}", "", *run(args.steps, args.batch), ""]))


if __name__ == "__main__":
    main()
