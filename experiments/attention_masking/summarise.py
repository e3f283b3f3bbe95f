"""Attention-guided masking on digits: re-evaluate the mim_digits runs and tabulate / plot them.

Reads, below RUNS, each run that ``run.sh`` leaves (``salguide-train experiment=mim_digits
attention_masking=<mode>``): ``.hydra/config.yaml`` (mode, seed, schedule), ``models/mim.safetensors`` (the
student: ViT + reconstruction decoder) and ``teacher.safetensors`` (the final EMA teacher), and scores each on
its test split (360 digits)::

    python summarise.py RUNS --out DIR   # writes results.md / results.json / results_bars.png / masks.png

- recon MSE (own masks): hidden-patch MSE under masks drawn by the final teacher with the run's own mode at
  the final ratio (generator seed 1000 + seed);
- recon MSE (shared random masks): the same random masks for every mode (seed 10000 + seed): comparable;
- accuracy of the CLS head on clean images, and on images with the shared random masks hidden;
- attention mass hidden: share of the final teacher's CLS attention on the patches its own mode hides.

AttMask: Kakogeorgiou et al., ECCV 2022; ACMIL: Zhang et al., ECCV 2024; SimMIM: Xie et al., CVPR 2022.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from salguide.attention.masking import (  # noqa: E402
    attention_guided_mask,
    cls_attention_scores,  # noqa: E402
    mask_patches,
)
from salguide.callbacks.attention_masking import load_teacher  # noqa: E402
from salguide.io import atomic_write_json, atomic_write_text  # noqa: E402
from salguide.models.mim import MaskedReconstructionModule, evaluate_masked  # noqa: E402
from salguide.studies import (  # noqa: E402
    job_results,
    log_results_table,
    run_config,
    run_datamodule,
    run_epochs,
    summary_arguments,
    test_split,
)
from salguide.weights_io import read_state  # noqa: E402

MODE_NAMES = {
    "random": "random",
    "high": "attmask_high",
    "low": "attmask_low",
    "hint": "attmask_hint",
    "acmil": "acmil",
}  # callback mode -> attention_masking option
# settings of the callback that are not arguments of the mask function (older runs: name, recon_weight)
SCHEDULE_KEYS = ("_target_", "mode", "name", "ratio", "ratio_start", "ratio_steps", "layer", "ema", "seed")
SCHEDULE_KEYS += ("recon_weight",)
METRICS = {  # key -> (column title, format, higher is better)
    "recon_own": ("recon MSE, own masks", "{:.3f}", False),
    "recon_shared": ("recon MSE, shared random masks", "{:.3f}", False),
    "acc_clean": ("acc clean (%)", "{:.2f}", True),
    "acc_hidden50": ("acc 50% random hidden (%)", "{:.2f}", True),
    "att_hidden": ("teacher attention hidden", "{:.2f}", None),
}


def masking_settings(cfg: Any) -> dict[str, Any]:
    """A run's ``callbacks.attention_masking`` node (runs older than the callback layout: ``attention_masking``),
    without ``save_teacher_to`` (it interpolates the Hydra run folder; the teacher is read from the run)."""
    node = (cfg.get("callbacks") or {}).get("attention_masking") or cfg["attention_masking"]
    return {k: node[k] for k in node if k != "save_teacher_to"}


class Run:
    """One mim_digits run folder: its masking settings, student and teacher, and its test split."""

    def __init__(self, run: Path) -> None:
        cfg = run_config(run)
        mcfg = masking_settings(cfg)
        self.path, self.seed, self.mode = run, int(cfg.seed), str(mcfg.get("mode", mcfg.get("name")))
        if self.mode not in MODE_NAMES:
            raise ValueError(f"{run}: attention_masking {self.mode!r} is not one of {sorted(MODE_NAMES)}")
        self.ratio, self.layer = float(mcfg["ratio"]), int(mcfg["layer"])
        self.kwargs = {k: v for k, v in mcfg.items() if k not in SCHEDULE_KEYS}
        for name in ("models/mim.safetensors", "teacher.safetensors"):
            if not (run / name).is_file():
                raise FileNotFoundError(f"{run}: no {name} (not a finished mim_digits run)")
        # model: the MaskedReconstructionModule node (net: the ViT); older runs: the ViT, the module built here
        self.module = (
            instantiate(cfg.model) if "net" in cfg.model else MaskedReconstructionModule(instantiate(cfg.model))
        )
        self.module.load_state_dict(read_state(run / "models" / "mim.safetensors"))
        self.module.eval()
        self.teacher = load_teacher(run / "teacher.safetensors", self.module)
        self.x, self.y, *_ = test_split(run_datamodule(run))

    def own_mask(self, scores: torch.Tensor) -> torch.Tensor:
        """The final teacher's masks with the run's own mode at the final ratio."""
        return attention_guided_mask(
            scores, self.ratio, self.mode, generator=torch.Generator().manual_seed(1000 + self.seed), **self.kwargs
        )

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        x, y, module = self.x, self.y, self.module
        shared = attention_guided_mask(
            torch.zeros(len(x), module.grid[0] * module.grid[1]),
            self.ratio,
            "random",
            generator=torch.Generator().manual_seed(10_000 + self.seed),
        )
        scores = cls_attention_scores(self.teacher, x, self.layer)
        own = self.own_mask(scores)
        att = scores / scores.sum(1, keepdim=True)
        return {
            "recon_own": evaluate_masked(module, x, y, own)["recon_mse"],
            "recon_shared": evaluate_masked(module, x, y, shared)["recon_mse"],
            "acc_clean": evaluate_masked(module, x, y, torch.zeros_like(shared))["acc"],
            "acc_hidden50": evaluate_masked(module, x, y, shared)["acc"],
            "att_hidden": float((att * own).sum(1).mean()),
            "hidden_own": float(own.float().sum(1).mean()),
        }


def load_runs(root: Path) -> tuple[list[dict[str, Any]], dict[int, dict[str, Run]]]:
    """One row per run below ``root`` (metrics, seed, mode, schedule) and the runs by seed and mode."""
    rows, runs = [], {}
    for path, cfg, r in job_results(root):
        run = Run(path)
        name = MODE_NAMES[run.mode]
        rows.append(
            {
                "mode": name,
                "seed": run.seed,
                **run.evaluate(),
                "seconds": float(r["seconds"]),
                "epochs": run_epochs(cfg),
                "batch_size": int(cfg["data"]["batch_size"]),
                "ratio": run.ratio,
                "ratio_start": masking_settings(cfg)["ratio_start"],
                "ratio_steps": int(masking_settings(cfg)["ratio_steps"]),
                "ema": float(masking_settings(cfg)["ema"]),
                "run": str(path),
            }
        )
        runs.setdefault(run.seed, {})[name] = run
    if not rows:
        raise FileNotFoundError(f"no results.json below {root}")
    return rows, runs


def per_seed(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """mode -> metric -> values over seeds (in seed order), modes in the table's order."""
    out: dict[str, dict[str, list[float]]] = {}
    for mode in MODE_NAMES.values():
        for r in sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["seed"]):
            for k in (*METRICS, "hidden_own"):
                out.setdefault(mode, {}).setdefault(k, []).append(r[k])
    return out


def table(rows: list[dict[str, Any]], res: dict[str, dict[str, list[float]]], wall: float | None) -> str:
    r0, cols = rows[0], list(METRICS)
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        "# Attention-guided masking on digits (masked reconstruction + CLS cross-entropy)",
        "",
        f"Digits ViT (32 px, 64 patches), {r0['epochs']} epochs AdamW lr 1e-3, batch {r0['batch_size']}, mask "
        f"ratio {r0['ratio_start']} -> {r0['ratio']} (linear over {r0['ratio_steps']} steps, the first third), "
        f"EMA teacher decay {r0['ema']}; seeds {seeds}; mean +- std over seeds"
        + (f"; CPU, 1 thread, {wall / 60:.1f} min in all" if wall is not None else "")
        + ". Test split: 360 digits. 'own masks': the final teacher's masks with the run's own mode at ratio "
        f"{r0['ratio']}; 'shared random masks': the same random {r0['ratio']:.0%} masks for every mode; 'teacher "
        "attention hidden': share of the final teacher's CLS attention on the patches its own mode hides.",
        "",
        "| mode | " + " | ".join(METRICS[c][0] for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for mode, r in res.items():
        cells = []
        for c in cols:
            fmt = METRICS[c][1]
            cells.append(f"{fmt.format(statistics.mean(r[c]))} +- {fmt.format(statistics.pstdev(r[c]))}")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    if wall is not None:
        lines += ["", f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, nice 19, shared machine."]
    return "\n".join(lines) + "\n"


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


@torch.no_grad()
def plot_masks(runs: dict[str, Run], path: Path, seed: int, n: int = 4) -> None:
    """Per digit two rows: each mode's final teacher CLS attention, then the patches it hides (red)."""
    modes = list(runs)
    fig, axes = plt.subplots(2 * n, len(modes) + 1, figsize=(1.6 * (len(modes) + 1), 1.6 * 2 * n), squeeze=False)
    xs = runs[modes[0]].x[:n]
    for j, name in enumerate(modes):
        run = runs[name]
        scores = cls_attention_scores(run.teacher, xs, run.layer)
        mask = run.own_mask(scores)
        gh, gw = run.module.grid
        for i in range(n):
            img = xs[i, 0]
            a_ax, m_ax = axes[2 * i, j + 1], axes[2 * i + 1, j + 1]
            a_ax.imshow(scores[i].view(gh, gw).numpy(), cmap="viridis")
            hid = mask_patches(torch.ones_like(xs[i : i + 1]), mask[i : i + 1], run.module.grid)[0, 0] == 0
            rgb = ((img - img.min()) / (img.max() - img.min() + 1e-8)).unsqueeze(-1).repeat(1, 1, 3)
            rgb[hid] = 0.5 * rgb[hid] + 0.5 * torch.tensor([1.0, 0.0, 0.0])
            m_ax.imshow(rgb.numpy())
            if i == 0:
                a_ax.set_title(f"{name}\nteacher attn", fontsize=8)
                m_ax.set_title(f"hidden ({int(mask[i].sum())}/{gh * gw})", fontsize=7)
            else:
                m_ax.set_title(f"{int(mask[i].sum())}/{gh * gw}", fontsize=7)
    for i in range(n):
        axes[2 * i, 0].imshow(xs[i, 0].numpy(), cmap="gray")
        axes[2 * i, 0].set_title("test digit" if i == 0 else "", fontsize=8)
        axes[2 * i + 1, 0].axis("off")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"final EMA teachers (seed {seed}): last-layer CLS attention (head mean) and hidden patches (red)", fontsize=9
    )
    save_png(fig, path)


def save_png(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = summary_arguments(__doc__.splitlines()[0], Path(__file__).parent)
    torch.set_num_threads(1)
    rows, runs = load_runs(args.runs)
    res = per_seed(rows)
    md = table(rows, res, args.wall_seconds)
    seeds = sorted(runs)
    atomic_write_text(args.out / "results.md", md)
    atomic_write_json(
        args.out / "results.json",
        {
            "epochs": rows[0]["epochs"],
            "seeds": seeds,
            "ratio": rows[0]["ratio"],
            "ratio_start": rows[0]["ratio_start"],
            "ratio_steps": rows[0]["ratio_steps"],
            "ema": rows[0]["ema"],
            "batch_size": rows[0]["batch_size"],
            "seconds": args.wall_seconds,
            "per_seed": res,
            "rows": [{k: v for k, v in r.items() if k != "run"} for r in rows],
        },
    )
    plot_bars(res, args.out / "results_bars.png", rows[0]["epochs"])
    order = [m for m in MODE_NAMES.values() if m in runs[seeds[0]]]
    plot_masks({m: runs[seeds[0]][m] for m in order}, args.out / "masks.png", seeds[0])
    log_results_table([{k: v for k, v in r.items() if k != "run"} for r in rows], args.runs, "attention_masking")
    print(md)


if __name__ == "__main__":
    main()
