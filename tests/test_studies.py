"""salguide.studies.job_results: the runs below a study folder, without the sweeps' combined tables."""

from __future__ import annotations

import json

from salguide.studies import job_results


def test_job_results_yields_runs_and_skips_combined_sweep_tables(tmp_path):
    for job, acc in (("0", 70.0), ("1", 80.0)):
        (tmp_path / "sweep" / job / ".hydra").mkdir(parents=True)
        (tmp_path / "sweep" / job / ".hydra" / "config.yaml").write_text(f"seed: {job}\n")
        (tmp_path / "sweep" / job / "results.json").write_text(json.dumps({"test_acc": acc}))
    # what salguide.sweep.CombinedResults writes into the sweep folder: every job's rows, no .hydra
    (tmp_path / "sweep" / "results.json").write_text(json.dumps([{"test_acc": 70.0}, {"test_acc": 80.0}]))
    got = [(run.name, cfg["seed"], res["test_acc"]) for run, cfg, res in job_results(tmp_path)]
    assert got == [("0", 0, 70.0), ("1", 1, 80.0)]
