"""The benchmark script runs end to end in its CPU smoke mode and prints every comparison row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "attention.py"


@pytest.mark.slow
def test_benchmark_smoke_prints_table(tmp_path):
    out = tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--output", str(out)], capture_output=True,
                          text=True, timeout=300, check=True)  # fmt: skip
    text = out.read_text()
    assert text in done.stdout
    for method in ("SDPA flash", "salguide + mass", "SDPA bool key mask", "salguide key_index + mass",
                   "gather + flash", "eager softmax + mass"):  # fmt: skip
        assert f"| {method} |" in text
    assert "| 2,2,64,32 | 1.0 | SDPA flash |" in text and "| 1.00 |" in text
