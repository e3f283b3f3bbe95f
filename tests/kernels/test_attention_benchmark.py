"""The benchmark scripts run end to end in their smoke modes and print every row they write."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _smoke(script: str, tmp_path: Path) -> tuple[str, str]:
    """(table written to --output, stdout) of ``script --smoke``."""
    out = tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    return out.read_text(), done.stdout


@pytest.mark.slow
def test_benchmark_smoke_prints_table(tmp_path):
    text, stdout = _smoke("attention.py", tmp_path)
    assert text in stdout
    for method in ("SDPA flash", "salguide + mass", "SDPA bool key mask", "salguide key_index + mass",
                   "gather + flash", "eager softmax + mass"):  # fmt: skip
        assert f"| {method} |" in text
    assert "| 2,2,64,32 | 1.0 | SDPA flash |" in text and "| 1.00 |" in text


@pytest.mark.slow
def test_cpu_benchmark_smoke_prints_every_table(tmp_path):
    text, stdout = _smoke("attention_cpu.py", tmp_path)
    for row in ("| 2,2,33,16 | torch SDPA |", "| salguide + mass |", "| dense reference + mass |",
                "| salguide + mass + colsum + lse |", "| salguide ViT, routed, no plugin |",
                "| HF ViT, routed, no plugin |", "| salguide ViT + concentration loss (CLS, last block) |"):  # fmt: skip
        assert row in text and row in stdout, row
    assert text.startswith("Machine: ") and "1 thread(s)" in text
