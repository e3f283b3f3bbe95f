"""Attention-guided masking on digits: masked reconstruction (SimMIM-style) + CLS cross-entropy.

For each seed and mask mode (random, AttMask high / low / hint, ACMIL stochastic top-K), the digits ViT
(32 px, patch 4: 64 patches + CLS, width 64, depth 4) is trained with MaskedReconstructionModule (CE of the
CLS head on the masked image + MSE of a linear decoder on the hidden patches' pixels) and
AttentionMaskingCallback (masks from an EMA teacher's last-layer CLS attention, decay 0.99). The mask ratio
ramps linearly from 0.1 to 0.5 over the first third of training. ACMIL: each of the top round(0.5 * 64 / 0.75)
= 43 most attended patches is hidden with probability 0.75 (32 hidden on average, like the other modes).

Evaluation on the test split (360 digits):
- recon MSE (own masks): hidden-patch MSE under masks drawn by the final teacher with the run's own mode at 0.5;
- recon MSE (shared random masks): the same random 50% masks for every mode (comparable across modes);
- accuracy of the CLS head on clean images, and on images with the shared random 50% masks hidden;
- attention mass hidden: share of the final teacher's CLS attention that falls on the hidden patches.

    python experiments/attention_masking/run.py [--epochs 20] [--batch-size 16] [--seeds 0 1 2] [--name results]

Writes <name>.md / <name>.json, <name>_bars.png and masks.png (seed 0) next to this file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from salguide._lightning import pl
from salguide.attention.masking import attention_guided_mask, cls_attention_scores, mask_patches
from salguide.callbacks.attention_masking import AttentionMaskingCallback
from salguide.data import DigitsDataModule
from salguide.io import atomic_write_json, atomic_write_text
from salguide.models.mim import MaskedReconstructionModule, evaluate_masked
from salguide.models.vit import vit_digits
from salguide.viz._save import plt, save_png

HERE = Path(__file__).resolve().parent
MODES = {"random": "random", "attmask_high": "high", "attmask_low": "low", "attmask_hint": "hint", "acmil": "acmil"}
KWARGS = {"hint": {"hint_ratio": 0.1}, "acmil": {"drop_prob": 0.75}}
RATIO, RATIO_START, EMA = 0.5, 0.1, 0.99
METRICS = {  # key -> (column title, format, higher is better)
    "recon_own": ("recon MSE, own masks", "{:.3f}", False),
    "recon_shared": ("recon MSE, shared random masks", "{:.3f}", False),
    "acc_clean": ("acc clean (%)", "{:.2f}", True),
    "acc_hidden50": ("acc 50% random hidden (%)", "{:.2f}", True),
    "att_hidden": ("teacher attention hidden", "{:.2f}", None),
}


def train(mode: str, seed: int, epochs: int, batch_size: int) -> tuple[MaskedReconstructionModule, AttentionMaskingCallback, DigitsDataModule]:
    dm = DigitsDataModule(batch_size=batch_size, image_size=32, seed=seed, forget=None)
    dm.setup("fit")
    steps = epochs * len(dm.train_dataloader())
    cb = AttentionMaskingCallback(mode, ratio=RATIO, ratio_start=RATIO_START, ratio_steps=steps // 3, ema=EMA,
                                  seed=seed, **KWARGS.get(mode, {}))
    pl.seed_everything(seed, verbose=False)
    module = MaskedReconstructionModule(vit_digits(), lr=1e-3, recon_weight=1.0)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, callbacks=[cb])
    trainer.fit(module, datamodule=dm)
    return module, cb, dm


def test_tensors(dm: DigitsDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*[(b[0], b[1]) for b in dm.test_dataloader()])
    return torch.cat(xs), torch.cat(ys)


def evaluate(module: MaskedReconstructionModule, cb: AttentionMaskingCallback, x: torch.Tensor, y: torch.Tensor,
             shared: torch.Tensor, seed: int) -> dict[str, float]:
    scores = cls_attention_scores(cb.teacher, x, cb.layer)
    own = attention_guided_mask(scores, RATIO, cb.mode, generator=torch.Generator().manual_seed(1000 + seed),
                                **cb.kwargs)
    none = torch.zeros_like(shared)
    att = scores / scores.sum(1, keepdim=True)
    return {"recon_own": evaluate_masked(module, x, y, own)["recon_mse"],
            "recon_shared": evaluate_masked(module, x, y, shared)["recon_mse"],
            "acc_clean": evaluate_masked(module, x, y, none)["acc"],
            "acc_hidden50": evaluate_masked(module, x, y, shared)["acc"],
            "att_hidden": float((att * own).sum(1).mean()),
            "hidden_own": float(own.float().sum(1).mean())}


def plot_masks(runs: dict[str, tuple[MaskedReconstructionModule, AttentionMaskingCallback]], x: torch.Tensor,
               path: Path, seed: int, n: int = 4) -> None:
    """Per digit two rows: each mode's final teacher CLS attention, then the patches it hides (red)."""
    modes = list(runs)
    fig, axes = plt.subplots(2 * n, len(modes) + 1, figsize=(1.6 * (len(modes) + 1), 1.6 * 2 * n))
    xs = x[:n]
    for j, name in enumerate(modes):
        module, cb = runs[name]
        scores = cls_attention_scores(cb.teacher, xs, cb.layer)
        mask = attention_guided_mask(scores, RATIO, cb.mode, generator=torch.Generator().manual_seed(1000 + seed),
                                     **cb.kwargs)
        gh, gw = module.grid
        for i in range(n):
            img = xs[i, 0]
            a_ax, m_ax = axes[2 * i, j + 1], axes[2 * i + 1, j + 1]
            a_ax.imshow(scores[i].view(gh, gw).numpy(), cmap="viridis")
            hid = mask_patches(torch.ones_like(xs[i : i + 1]), mask[i : i + 1], module.grid)[0, 0] == 0
            rgb = ((img - img.min()) / (img.max() - img.min() + 1e-8)).unsqueeze(-1).repeat(1, 1, 3)
            rgb[hid] = 0.5 * rgb[hid] + 0.5 * torch.tensor([1.0, 0.0, 0.0])
            m_ax.imshow(rgb.numpy())
            if i == 0:
                a_ax.set_title(f"{name}\nteacher attn", fontsize=8)
                m_ax.set_title(f"hidden ({int(mask[i].sum())}/64)", fontsize=7)
            else:
                m_ax.set_title(f"{int(mask[i].sum())}/64", fontsize=7)
    for i in range(n):
        axes[2 * i, 0].imshow(xs[i, 0].numpy(), cmap="gray")
        axes[2 * i, 0].set_title("test digit" if i == 0 else "", fontsize=8)
        axes[2 * i + 1, 0].axis("off")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"final EMA teachers (seed {seed}): last-layer CLS attention (head mean) and hidden patches "
                 f"(red) at ratio {RATIO}", fontsize=9)
    save_png(fig, path)


def plot_bars(res: dict[str, dict[str, list[float]]], path: Path, epochs: int) -> None:
    keys = ["recon_own", "recon_shared", "acc_clean", "acc_hidden50"]
    modes = list(res)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.0 * len(keys), 3.2))
    colors = ["tab:gray", "tab:red", "tab:blue", "tab:orange", "tab:green"]
    for ax, k in zip(axes, keys):
        means = [statistics.mean(res[m][k]) for m in modes]
        stds = [statistics.pstdev(res[m][k]) for m in modes]
        ax.bar(range(len(modes)), means, yerr=stds, capsize=3, color=colors[: len(modes)])
        ax.set_xticks(range(len(modes)))
        ax.set_xticklabels(modes, rotation=30, ha="right", fontsize=8)
        ax.set_title(METRICS[k][0] + (" (lower better)" if not METRICS[k][2] else " (higher better)"), fontsize=8)
        lo, hi = min(m - s for m, s in zip(means, stds)), max(m + s for m, s in zip(means, stds))
        pad = 0.15 * (hi - lo + 1e-6)
        ax.set_ylim(max(0.0, lo - pad), hi + pad)
    fig.suptitle(f"digits ViT, masked reconstruction + CE, {epochs} epochs, mean +- std over seeds", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def write(res: dict[str, dict[str, list[float]]], a: argparse.Namespace, seeds: list[int], seconds: float) -> None:
    cols = list(METRICS)
    lines = ["# Attention-guided masking on digits (masked reconstruction + CLS cross-entropy)", "",
             f"Digits ViT (32 px, 64 patches), {a.epochs} epochs AdamW lr 1e-3, batch {a.batch_size}, mask ratio 0.1 -> 0.5 "
             f"(linear over the first third), EMA teacher decay {EMA}; seeds {seeds}; mean +- std over seeds; "
             f"CPU, 1 thread, {seconds / 60:.1f} min in all. Test split: 360 digits. 'own masks': the final "
             "teacher's masks with the run's own mode at ratio 0.5; 'shared random masks': the same random 50% "
             "masks for every mode; 'teacher attention hidden': share of the final teacher's CLS attention on the "
             "patches its own mode hides.", "",
             "| mode | " + " | ".join(METRICS[c][0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for mode, r in res.items():
        cells = []
        for c in cols:
            fmt = METRICS[c][1]
            cells.append(f"{fmt.format(statistics.mean(r[c]))} +- {fmt.format(statistics.pstdev(r[c]))}")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(HERE / f"{a.name}.md", text)
    atomic_write_json(HERE / f"{a.name}.json", {"epochs": a.epochs, "seeds": seeds, "ratio": RATIO,
                                                "ratio_start": RATIO_START, "ema": EMA, "batch_size": a.batch_size, "seconds": seconds,
                                                "per_seed": res})
    plot_bars(res, HERE / f"{a.name}_bars.png", a.epochs)
    print(text, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="attention-guided masking on digits")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--name", default="results", help="output stem: <name>.md / .json / _bars.png")
    a = ap.parse_args()
    torch.set_num_threads(1)
    res: dict[str, dict[str, list[float]]] = {m: {} for m in a.modes}
    start = time.perf_counter()
    for seed in a.seeds:
        seen: dict[str, tuple[MaskedReconstructionModule, AttentionMaskingCallback]] = {}
        x = y = shared = None
        for name in a.modes:
            t0 = time.perf_counter()
            module, cb, dm = train(MODES[name], seed, a.epochs, a.batch_size)
            x, y = test_tensors(dm)
            shared = attention_guided_mask(torch.zeros(len(x), 64), RATIO, "random",
                                           generator=torch.Generator().manual_seed(10_000 + seed))
            row = evaluate(module, cb, x, y, shared, seed)
            for k, v in row.items():
                res[name].setdefault(k, []).append(v)
            seen[name] = (module, cb)
            print(json.dumps({"mode": name, "seed": seed, "train_s": round(time.perf_counter() - t0, 1),
                              **{k: round(v, 4) for k, v in row.items()}}), flush=True)
        if seed == a.seeds[0] and x is not None:
            plot_masks(seen, x, HERE / ("masks.png" if a.name == "results" else f"{a.name}_masks.png"), seed)
        write(res, a, a.seeds[: a.seeds.index(seed) + 1], time.perf_counter() - start)


if __name__ == "__main__":
    main()
