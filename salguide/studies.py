"""Helpers shared by the study summary scripts under ``experiments/`` (``summarise.py``): their command line,
the runs below a study folder, the settings read back from a run's config (the current layout and the one
of runs recorded before ``model:`` became the LightningModule) and the offline W&B table of their per-run rows."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf


def summary_arguments(description: str, default_out: Path, steps: Sequence[str] = ()) -> argparse.Namespace:
    """Parse ``[step] runs [--out DIR] [--wall-seconds S]``: ``step`` only when ``steps`` are given."""
    ap = argparse.ArgumentParser(description=description)
    if steps:
        ap.add_argument("step", choices=tuple(steps))
    ap.add_argument("runs", type=Path, help="the study's run folder (run.sh's RUNS or a sweep directories' parent)")
    ap.add_argument("--out", type=Path, default=default_out, help="where tables and figures go")
    ap.add_argument("--wall-seconds", type=float, default=None, help="run.sh's wall time, quoted in results.md")
    return ap.parse_args()


def job_results(root: Path) -> Iterator[tuple[Path, dict[str, Any], Any]]:
    """(run folder, its composed config, its parsed ``results.json``) for every run below ``root``, in path
    order. A sweep folder's combined ``results.json`` (written by :class:`salguide.sweep.CombinedResults`)
    has no ``.hydra/config.yaml`` beside it and is not a run: it is skipped."""
    for res in sorted(Path(root).rglob("results.json")):
        config = res.parent / ".hydra" / "config.yaml"
        if config.is_file():
            yield res.parent, yaml.safe_load(config.read_text()), yaml.safe_load(res.read_text())


def log_results_table(rows: Sequence[dict[str, Any]], root: Path, study: str) -> None:
    """``rows`` (without their ``run`` folder) as the table ``results`` of an offline W&B run in ``root``
    (``wandb sync`` uploads it)."""
    import wandb

    run = wandb.init(
        project="salguide",
        name=f"{study}-summary",
        job_type="summary",
        mode="offline",
        dir=str(root),
        group=f"{study}_study",
    )
    cols = [k for k in rows[0] if k != "run"]
    run.log({"results": wandb.Table(columns=list[str | int](cols), data=[[r[c] for c in cols] for r in rows])})
    run.finish()


def run_config(run: Path) -> DictConfig:
    """A run folder's composed config (``.hydra/config.yaml``) with ``paths`` dropped: the rest (``data``,
    ``model``, ``seed``) resolves outside Hydra."""
    path = Path(run) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run} is not a salguide-train run folder: no {path}")
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ValueError(f"{path} does not hold a config mapping")
    cfg.pop("paths", None)
    return cfg


def run_setting(cfg: Mapping[str, Any], *paths: str) -> Any:
    """The first of the dotted ``paths`` that a run's saved config sets (interpolations resolved): the current
    layout's key, then older runs' (``"unlearning.optimizer.lr", "unlearning.lr"``); else a ValueError."""
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    for path in paths:
        value = OmegaConf.select(node, path)
        if value is not None:
            return value
    raise ValueError(f"the run config sets none of {', '.join(paths)}")


def run_epochs(cfg: Mapping[str, Any], stage: str = "classify") -> int:
    """The epochs a run trained: ``trainer.max_epochs`` where set (it sets every stage's), else the unlearning
    protocol's ``<stage>.epochs`` (``original``, ``unlearning``, ``retrain``); older single-stage runs (classify,
    attention) kept theirs in ``classify.epochs``, the default ``stage``."""
    return int(run_setting(cfg, "trainer.max_epochs", f"{stage}.epochs"))


def run_lr(cfg: Mapping[str, Any], stage: str = "classify") -> float:
    """The learning rate of a run's ``stage``: ``classify`` or ``original`` (the model's own training,
    ``model.optimizer.lr``), ``unlearning`` or ``retrain`` (``<stage>.optimizer.lr``); older runs: ``<stage>.lr``."""
    current = "model.optimizer.lr" if stage in ("classify", "original") else f"{stage}.optimizer.lr"
    return float(run_setting(cfg, current, f"{stage}.lr"))


def run_task(cfg: Mapping[str, Any]) -> str:
    """The pipeline a run ran, e.g. "unlearn", "classify", "attention", "unlearn_diffusion": the module of its
    ``task._target_`` (``salguide.pipelines.<module>.run_*``; another pipeline: the whole target), or older
    runs' ``task`` name."""
    task = cfg.get("task")
    if not isinstance(task, Mapping):
        return str(task)
    target = str(task.get("_target_", ""))
    module = target.rpartition(".")[0]
    return module.removeprefix("salguide.pipelines.") if module.startswith("salguide.pipelines.") else target


def net_config(cfg: Mapping[str, Any]) -> Any:
    """A run config's network node: ``model.net`` (``model:`` the LightningModule); older runs: ``model``."""
    model = cfg["model"]
    return model["net"] if "net" in model else model


def run_model(run: Path, stage: str) -> Any:
    """The network of ``run``'s config (``model.net``; older runs: ``model``) with the weights its stage saved
    (``models/<stage>.safetensors``)."""
    from hydra.utils import instantiate

    from salguide.weights_io import load_weights

    path = Path(run) / "models" / f"{stage}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no saved weights {path} (stage {stage!r})")
    return load_weights(instantiate(net_config(run_config(run))), path)


def run_datamodule(run: Path) -> Any:
    """``run``'s datamodule (``data:``, the run's seed), set up: the same splits the run trained and tested on."""
    from hydra.utils import instantiate

    dm = instantiate(run_config(run).data)
    dm.setup("fit")
    return dm


def test_split(datamodule: Any) -> tuple[Any, ...]:
    """The whole test split as tensors (x, y[, mask]) from a datamodule's (unshuffled) test loader, for the
    summaries' figures and re-evaluations (pipelines evaluate batch by batch instead)."""
    from salguide.data.loaders import first_samples

    datamodule.setup("test")
    return first_samples(datamodule.test_dataloader())


def throughput_table(rows: Sequence[dict[str, Any]], header: str) -> str:
    """benchmarks/token_pruning.py's rows as markdown: measured images/s and speed-ups next to the FLOP bound
    (unpruned FLOPs / pruned FLOPs); shared by the benchmark and the token-pruning study's summary."""
    lines = [
        header,
        "",
        "| policy | keep | tokens after each block | train img/s | train x | train FLOP x | "
        "infer img/s | infer x | infer FLOP x |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cells(r: dict[str, Any], mode: str) -> str:  # a mode the run did not time shows as dashes
        if f"{mode}_img_s" not in r:
            return "– | – | –"
        return f"{r[f'{mode}_img_s']:.0f} | {r[f'{mode}_ratio']:.2f} | {r[f'{mode}_flop_ratio']:.2f}"

    lines += [
        f"| {r['policy']} | {r['keep']} | {r['tokens']} | {cells(r, 'train')} | {cells(r, 'infer')} |" for r in rows
    ]
    return "\n".join(lines) + "\n"
