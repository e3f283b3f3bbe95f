"""The run-time file stored beside cached Retrain weights: absent -> None, corrupt -> an error naming it."""

import pytest

from salguide.cache import cached_seconds


@pytest.mark.parametrize(
    "content",
    ['{"seconds": 1.5', "", '{"secs": 2}', '{"seconds": "fast"}', "\udcff"],
    ids=["truncated", "empty", "no_key", "not_a_number", "bad_utf8"],
)
def test_a_corrupt_timing_file_names_the_file(tmp_path, content):
    path = tmp_path / "retrain-0123.json"
    if content == "\udcff":
        path.write_bytes(b"\xff\xfe{")
    else:
        path.write_text(content)
    with pytest.raises(ValueError, match=r"cache file .*retrain-0123\.json is corrupt.*delete it to recompute"):
        cached_seconds(path)


def test_timing_file_absent_or_valid(tmp_path):
    assert cached_seconds(tmp_path / "missing.json") is None
    (tmp_path / "t.json").write_text('{"seconds": 3}')
    assert cached_seconds(tmp_path / "t.json") == 3.0
