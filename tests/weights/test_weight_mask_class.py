"""WeightMask: construction, algebra, statistics, validation against a model, safe atomic files."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import salguide
import salguide.weights.mask as mask_module
from salguide.weights import WeightMask


def tiny_model():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def mask_for(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return WeightMask({n: torch.rand(p.shape, generator=gen) < 0.5 for n, p in model.named_parameters()})


def test_construction_copies_to_contiguous_cpu_and_validates_dtype():
    source = torch.tensor([[True, False], [False, True]]).t()  # not contiguous
    m = WeightMask({"w": source})
    assert m["w"].is_contiguous() and m["w"].device.type == "cpu" and list(m) == ["w"] and len(m) == 1
    source[0, 0] = False
    assert m["w"][0, 0]  # the mask holds its own copy
    with pytest.raises(ValueError, match="'w'.*torch.bool"):
        WeightMask({"w": torch.ones(2)})
    with pytest.raises(ValueError, match="non-empty"):
        WeightMask({})


def test_statistics_hand_computed():
    m = WeightMask({"a": torch.tensor([True, False, False, False]), "b": torch.tensor([[True, True], [True, False]])})
    assert (m.numel, m.num_selected) == (8, 4)
    assert m.density == 0.5 and m.sparsity == 0.5
    assert m.layer_sparsity() == {"a": 0.75, "b": 0.25}
    assert repr(m) == "WeightMask(tensors=2, numel=8, sparsity=0.5000)"


def test_from_scores_and_threshold():
    scores = {"a": torch.tensor([0.1, 0.9, 0.5]), "b": torch.tensor([0.7, 0.2])}
    assert WeightMask.from_scores(scores, 0.4)["a"].tolist() == [False, True, False]
    assert WeightMask.from_scores(scores, 0.4)["b"].tolist() == [True, False]
    t = WeightMask.from_threshold(scores, 0.5)
    assert t["a"].tolist() == [False, True, True] and t["b"].tolist() == [True, False]
    with pytest.raises(ValueError, match="threshold"):
        WeightMask.from_threshold(scores, float("nan"))
    with pytest.raises(ValueError, match="'b'"):
        WeightMask.from_threshold({"b": torch.tensor([float("inf")])}, 0.5)


def test_algebra_matches_elementwise_logic():
    model = tiny_model()
    a, b = mask_for(model, 0), mask_for(model, 1)
    for name in a:
        assert torch.equal((a & b)[name], a[name] & b[name])
        assert torch.equal((a | b)[name], a[name] | b[name])
        assert torch.equal((~a)[name], ~a[name])
    assert (a & ~a).num_selected == 0 and (a | ~a).sparsity == 0.0
    assert a == mask_for(model, 0) and a != b


def test_algebra_refuses_mismatched_masks():
    a = WeightMask({"w": torch.ones(3, dtype=torch.bool), "v": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"1 only in left \[v\]"):
        a & WeightMask({"w": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"w \(3,\) vs \(4,\)"):
        a | WeightMask({"w": torch.ones(4, dtype=torch.bool), "v": torch.ones(2, dtype=torch.bool)})


def test_validate_lists_missing_unexpected_and_shapes():
    model = tiny_model()
    good = mask_for(model)
    good.validate(model)
    other = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2), nn.Linear(2, 2))
    with pytest.raises(ValueError) as err:
        good.validate(other)
    text = str(err.value)
    assert "2 missing [3.weight, 3.bias]" in text
    assert "3 shape mismatches" in text and "0.weight (4, 3) vs (5, 3)" in text
    subset = WeightMask({"0.weight": good["0.weight"]})
    subset.validate(model, strict=False)
    with pytest.raises(ValueError, match="3 missing"):
        subset.validate(model)
    extra = WeightMask({**good, "head.weight": torch.ones(1, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"1 unexpected \[head.weight\]"):
        extra.validate(model, strict=False)


def test_validate_truncates_long_lists():
    many = WeightMask({f"p{i}": torch.ones(1, dtype=torch.bool) for i in range(12)})
    with pytest.raises(ValueError, match=r"12 unexpected \[p0, p1, p2, p3, p4, \.\.\. \(\+7 more\)\]"):
        many.validate(tiny_model())


def test_save_load_round_trip_with_metadata(tmp_path):
    model = tiny_model()
    m = mask_for(model)
    path = m.save(tmp_path / "sub" / "mask.safetensors", metadata={"ratio": "0.5"})
    loaded = WeightMask.load(path, model=model)
    assert loaded == m and list(loaded) == list(m)
    assert loaded.metadata["ratio"] == "0.5"
    assert loaded.metadata["salguide_version"] == salguide.__version__
    assert loaded.metadata["salguide_mask_format"] == "1"
    reordered = WeightMask({n: m[n] for n in reversed(list(m))})
    assert list(WeightMask.load(reordered.save(tmp_path / "r.safetensors"))) == list(reordered)
    with pytest.raises(ValueError, match="reserved"):
        m.save(tmp_path / "x.safetensors", metadata={"salguide_version": "9"})
    with pytest.raises(ValueError, match="str -> str"):
        m.save(tmp_path / "x.safetensors", metadata={"ratio": 0.5})


def test_load_rejects_wrong_model_missing_and_corrupt_files(tmp_path):
    model = tiny_model()
    path = mask_for(model).save(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="does not fit"):
        WeightMask.load(path, model=nn.Linear(3, 2))
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        WeightMask.load(tmp_path / "nope.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="corrupt.safetensors"):
        WeightMask.load(corrupt)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x80\x04not a safetensors file at all")
    with pytest.raises(ValueError, match="garbage.safetensors"):
        WeightMask.load(garbage)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2, dtype=torch.bool)}, str(foreign))
    with pytest.raises(ValueError, match="not a salguide weight mask"):
        WeightMask.load(foreign)
    floats = tmp_path / "floats.safetensors"
    header = {"salguide_mask_format": "1", "salguide_mask_order": '["w"]'}
    save_file({"w": torch.ones(2)}, str(floats), metadata=header)
    with pytest.raises(ValueError, match="floats.safetensors.*torch.bool"):
        WeightMask.load(floats)
    save_file({"w": torch.ones(2, dtype=torch.bool)}, str(floats), metadata={**header, "salguide_mask_order": "[]"})
    with pytest.raises(ValueError, match="does not list the stored tensors"):
        WeightMask.load(floats)


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    model = tiny_model()
    target = tmp_path / "mask.safetensors"
    mask_for(model, 0).save(target)
    before = target.read_bytes()

    def half_write_then_fail(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(mask_module, "save_file", half_write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        mask_for(model, 1).save(target)
    with pytest.raises(OSError, match="disk full"):
        mask_for(model, 1).save(tmp_path / "new.safetensors")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.safetensors"]


def test_state_dict_round_trip_through_torch_save(tmp_path):
    m = mask_for(tiny_model())
    torch.save(m.to_state_dict(), tmp_path / "ckpt.pt")
    restored = WeightMask.from_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    assert restored == m
