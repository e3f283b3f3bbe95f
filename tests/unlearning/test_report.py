"""Result tables: gaps to Retrain, atomic JSON + CSV + markdown files, mean ± std over seeds."""

import csv
import json

import pytest

from salguide.unlearning.report import aggregate, format_aggregate, format_table, with_gaps, write_results

RETRAIN = {"method": "Retrain", "UA": 5.0, "RA": 100.0, "TA": 94.5, "MIA": 12.0, "RTE": 100.0}
FT = {"method": "FT", "UA": 2.5, "RA": 99.3, "TA": 93.5, "MIA": 10.0, "RTE": 5.0}
GA = {"method": "GA", "UA": 8.0, "RA": 96.0, "TA": 90.5, "MIA": 20.0}


def _cells(table: str, method: str) -> list[str]:
    line = next(row for row in table.splitlines() if row.startswith(f"| {method} "))
    return [c.strip() for c in line.strip("|").split("|")]


def test_format_table_shows_gaps_to_retrain():
    table = format_table([RETRAIN, FT, GA])
    assert table.splitlines()[0] == "| method | UA | RA | TA | MIA | RTE(s) | Avg.Gap |"
    assert _cells(table, "FT") == ["FT", "2.50 (2.50)", "99.30 (0.70)", "93.50 (1.00)", "10.00 (2.00)", "5.00", "1.55"]
    assert _cells(table, "GA")[-2:] == ["-", f"{(3 + 4 + 4 + 8) / 4:.2f}"]
    assert _cells(table, "Retrain") == ["Retrain", "5.00", "100.00", "94.50", "12.00", "100.00", "0.00"]


def test_format_table_without_retrain_has_no_gaps():
    expected = ["FT", "2.5", "99.3", "93.5", "10.0", "5.0", "-"]
    assert _cells(format_table([FT], digits=1), "FT") == expected


@pytest.mark.parametrize(
    "rows, match",
    [
        ([], "no result rows"),
        ([{"UA": 1}], "no 'method'"),
        ([{"method": "FT", "UA": 1, "RA": 1, "TA": 1}], "no 'MIA'"),
        ([{**FT, "RA": float("nan")}], "non-finite RA"),
        ([RETRAIN, dict(RETRAIN)], "2 rows are named 'Retrain'"),
    ],
)
def test_bad_rows_are_refused(rows, match):
    with pytest.raises(ValueError, match=match):
        format_table(rows)


def test_write_results_writes_json_csv_and_markdown(tmp_path):
    json_path, md_path = write_results(tmp_path / "out", [RETRAIN, FT], name="cifar")
    assert json_path == tmp_path / "out" / "cifar.json" and md_path == tmp_path / "out" / "cifar.md"
    saved = json.loads(json_path.read_text())
    assert saved == with_gaps([RETRAIN, FT])
    assert saved[1]["Avg.Gap"] == pytest.approx((2.5 + 0.7 + 1.0 + 2.0) / 4)
    assert md_path.read_text() == format_table([RETRAIN, FT])
    with open(tmp_path / "out" / "cifar.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["Retrain", "FT"] and float(rows[1]["Avg.Gap"]) == saved[1]["Avg.Gap"]
    assert float(rows[1]["UA"]) == FT["UA"]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["cifar.csv", "cifar.json", "cifar.md"]  # no temp files left


def test_failed_write_leaves_no_files(tmp_path):
    with pytest.raises(ValueError):
        write_results(tmp_path, [FT, {"method": "X"}])
    assert list(tmp_path.iterdir()) == []


def test_aggregate_mean_std_and_per_seed_gap():
    rows = [
        {**RETRAIN, "seed": 0},
        {**RETRAIN, "seed": 1, "UA": 7.0},
        {**FT, "seed": 0},
        {**FT, "seed": 1, "UA": 4.5},
    ]
    summary = {e["method"]: e for e in aggregate(rows)}
    ft = summary["FT"]
    assert ft["n"] == 2 and ft["UA"] == pytest.approx(3.5) and ft["UA_std"] == pytest.approx(2**0.5)
    assert ft["RA"] == pytest.approx(99.3) and ft["RA_std"] == pytest.approx(0.0)
    assert ft["Avg.Gap"] == pytest.approx((2.5 + 0.7 + 1.0 + 2.0) / 4)  # both seeds have the same gaps
    assert summary["Retrain"]["Avg.Gap"] == 0.0 and "seed" not in ft
    table = format_aggregate(aggregate(rows))
    assert "| FT | 2 | 3.50 ± 1.41 | 99.30 ± 0.00 |" in table


def test_aggregate_refuses_duplicates_and_missing_seed():
    with pytest.raises(ValueError, match="duplicate row for method 'FT' and seed 0"):
        aggregate([{**FT, "seed": 0}, {**FT, "seed": 0}])
    with pytest.raises(ValueError, match="no 'seed'"):
        aggregate([FT])
