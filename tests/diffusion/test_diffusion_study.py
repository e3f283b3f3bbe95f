"""The study's summary: mean ± std per method over seeds from results.json files, duplicates counted once."""

import json
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "unlearning_diffusion" / "summarise.py"


def test_summary_means_and_stds(tmp_path):
    runs = tmp_path / "runs"
    for method, seed, ua in (("SalUn", 0, 90.0), ("SalUn", 1, 100.0), ("ESD", 0, 50.0)):
        d = runs / method / str(seed)
        d.mkdir(parents=True)
        rows = [
            {"method": "Original", "seed": seed, "UA": 1.0, "Acc_r": 90.0, "FD": 1.0, "RTE": None},
            {"method": method, "seed": seed, "UA": ua, "Acc_r": 80.0, "FD": 2.0, "RTE": 10.0},
        ]
        (d / "results.json").write_text(json.dumps(rows))
        (d / ".hydra").mkdir()
        (d / ".hydra" / "config.yaml").write_text(f"seed: {seed}\n")
        (d / f"samples_{method}.png").write_bytes(b"png")
    # a sweep's combined table (salguide.sweep.CombinedResults: no .hydra beside it) is not counted again
    (runs / "SalUn" / "results.json").write_text(json.dumps([{"method": "SalUn", "seed": 5, "UA": 0.0}]))
    main = runpy.run_path(str(SCRIPT))["main"]
    main([str(runs), "--out", str(tmp_path / "out")])
    summary = {e["method"]: e for e in json.loads((tmp_path / "out" / "results.json").read_text())["summary"]}
    assert summary["Original"]["n"] == 2  # one Original row per seed, not per file
    assert summary["SalUn"]["UA"] == 95.0 and summary["SalUn"]["UA_std"] == pytest.approx(7.0710678)
    assert summary["ESD"]["n"] == 1 and summary["ESD"]["UA_std"] == 0.0 and "RTE" not in summary["Original"]
    assert "95.00 ± 7.07" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "figures" / "samples_SalUn.png").is_file()
