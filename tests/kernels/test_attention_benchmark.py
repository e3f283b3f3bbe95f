"""The benchmark scripts run end to end in their smoke modes and print every row they write; the GPU
benchmark appends rows as it measures them and judges its goals from a finished table."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "attention.py"


def _smoke(script: str, tmp_path: Path, out: Path | None = None) -> tuple[str, str]:
    """(table written to --output, stdout) of ``script --smoke``."""
    out = out or tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    return out.read_text(), done.stdout


@pytest.mark.slow
def test_benchmark_smoke_prints_table(tmp_path):
    out = tmp_path / "table.md"
    earlier = (
        "header of an earlier step\n| 9,9,9,9 | 1.0 | a row from a killed earlier step | 1.000 | 1.00 | n/a | n/a |\n"
    )
    out.write_text(earlier)
    text, stdout = _smoke("attention.py", tmp_path, out)
    assert text.startswith(earlier)  # rows are appended, nothing is lost
    new = text[len(earlier) :]
    assert new.strip() in stdout and "| B,H,N,D |" not in new
    for method in ("SDPA flash", "SDPA flash, V+w (mass)", "salguide triton + mass",
                   "salguide triton + mass, kernels only", "SDPA bool key mask", "salguide key_index + mass",
                   "gather + flash", "eager softmax + mass"):  # fmt: skip
        assert f"| {method} |" in new
    assert "failed" not in new
    assert "| 2,1,32,16 | 1.0 | SDPA flash |" in new and "| 1.00 |" in new


def test_goals_are_judged_from_the_table():
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    table = "\n".join([
        *bench.HEADER,
        "| 8,16,2048,64 | 1.0 | SDPA flash | 1.000 | 1.00 | 100 | 1.00 |",
        "| 8,16,2048,64 | 1.0 | salguide triton + mass | 1.250 | 1.25 | 105 | 1.05 |",
        "| 8,16,2048,64 | 0.5 | salguide key_index + mass | 0.700 | 0.70 | 60 | 0.60 |",
        "| 2,32,8192,128 | 1.0 | salguide triton + mass | 1.400 | 1.40 | 105 | 1.05 |",
    ])  # fmt: skip
    verdict = bench.goals(table)
    assert "(8,16,2048,64) attention + mass: 1.25x time (<= 1.3), 1.05x memory (<= 1.1): met" in verdict
    assert "(8,16,2048,64) keep 0.5 via key_index: 0.70x (<= 0.6): MISSED" in verdict
    assert "(2,32,8192,128) attention + mass: 1.40x time (<= 1.3), 1.05x memory (<= 1.1): MISSED" in verdict


@pytest.mark.slow
def test_cpu_benchmark_smoke_prints_every_table(tmp_path):
    text, stdout = _smoke("attention_cpu.py", tmp_path)
    for row in ("| 2,2,33,16 | torch SDPA |", "| salguide + mass |", "| dense reference + mass |",
                "| salguide + mass + colsum + lse |", "| salguide ViT, routed, no plugin |",
                "| HF ViT, routed, no plugin |", "| salguide ViT + concentration loss (CLS, last block) |"):  # fmt: skip
        assert row in text and row in stdout, row
    assert text.startswith("Machine: ") and "1 thread(s)" in text
