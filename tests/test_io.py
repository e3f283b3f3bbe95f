"""salguide.io: files appear whole or not at all, with the permissions an ordinary write would give."""

from __future__ import annotations

import json
import os
import stat

import pytest

from salguide.io import atomic_path, atomic_write_json, atomic_write_text


def test_failed_write_keeps_the_previous_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "table.md"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md"]


def test_failed_first_write_creates_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "sub" / "mask.safetensors") as tmp:
            tmp.write_bytes(b"x")
            raise ValueError
    assert list((tmp_path / "sub").iterdir()) == []


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_json_is_sorted_and_tensors_and_paths_become_plain_values(tmp_path):
    import torch

    path = atomic_write_json(tmp_path / "r.json", {"b": torch.tensor(1.5), "a": tmp_path})
    assert json.loads(path.read_text()) == {"a": str(tmp_path), "b": 1.5}
    assert path.read_text().index('"a"') < path.read_text().index('"b"')
    with pytest.raises(TypeError, match="cannot write object to JSON"):
        atomic_write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()
