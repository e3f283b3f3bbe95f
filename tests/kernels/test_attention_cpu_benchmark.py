"""benchmarks/attention_cpu.py runs end to end in its smoke mode and writes every table it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "attention_cpu.py"


@pytest.mark.slow
def test_cpu_benchmark_smoke_prints_every_table(tmp_path):
    out = tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--output", str(out)], capture_output=True,
                          text=True, timeout=300, check=True)  # fmt: skip
    text = out.read_text()
    for row in ("| 2,2,33,16 | torch SDPA |", "| salguide + mass |", "| dense reference + mass |",
                "| salguide + mass + colsum + lse |", "| salguide ViT, routed, no plugin |",
                "| HF ViT, routed, no plugin |", "| salguide ViT + concentration loss (CLS, last block) |"):  # fmt: skip
        assert row in text, row
        assert row in done.stdout
    assert text.startswith("Machine: ") and "1 thread(s)" in text
