"""The IDX reader against files written with struct/gzip alone: every type, gzipped or raw, and every
way a file can lie about its size (refused before anything of the claimed size is allocated)."""

from __future__ import annotations

import gzip
import struct
import tracemalloc

import numpy as np
import pytest
from idx_helpers import idx_bytes, write_idx

from salguide.data.idx import read_idx


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip_of_every_type(tmp_path, gz, dtype):
    a = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    if dtype == np.uint8:
        a = np.arange(30, dtype=np.uint8).reshape(2, 3, 5) * 8
    out = read_idx(write_idx(tmp_path / "a.idx", a, gz))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out, a)


def test_header_is_big_endian_and_gzip_is_detected_by_content(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    raw = b"\x00\x00\x08\x01" + struct.pack(">I", 5) + labels.tobytes()  # the published label-file layout
    (tmp_path / "labels.gz").write_bytes(raw)  # a raw file with a .gz name
    (tmp_path / "labels").write_bytes(gzip.compress(raw))  # a gzip file without one
    for name in ("labels.gz", "labels"):
        np.testing.assert_array_equal(read_idx(tmp_path / name, ndim=1, type_code=0x08), labels)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda b: b"\x01" + b[1:], "not an IDX file: magic number 0x01000803"),
        (lambda b: b[:2] + b"\x07" + b[3:], "not an IDX file"),
        (lambda b: b[:3] + b"\x02" + b[4:], "has 2 dimension"),
        (lambda b: b[:-1], "the file holds|the gzip trailer says"),
        (lambda b: b + b"\x00", "the file holds|the gzip trailer says"),
        (lambda b: b[:10], "truncated IDX header"),
        (lambda b: b[:2], "shorter than the 4-byte magic"),
    ],
    ids=["magic", "type", "ndim", "short", "trailing", "header", "tiny"],
)
def test_malformed_files_are_refused_naming_the_file(tmp_path, gz, mutate, match):
    data = mutate(idx_bytes(np.zeros((2, 4, 4), dtype=np.uint8)))
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(ValueError, match=match) as err:
        read_idx(path, ndim=3, type_code=0x08)
    assert str(path) in str(err.value)


def test_wrong_type_is_refused(tmp_path):
    path = write_idx(tmp_path / "f", np.zeros(3, dtype=np.float32), gz=False)
    with pytest.raises(ValueError, match="type 0x0d, expected 0x08"):
        read_idx(path, type_code=0x08)


def _lying_gzip(claimed: tuple[int, ...], isize_matches: bool) -> bytes:
    header = b"\x00\x00\x08" + bytes([len(claimed)]) + struct.pack(f">{len(claimed)}I", *claimed)
    blob = bytearray(gzip.compress(header + bytes(64)))
    if isize_matches:  # forge the trailer so that only the stream itself can tell
        blob[-4:] = struct.pack("<I", (len(header) + int(np.prod(claimed))) % 2**32)
    return bytes(blob)


@pytest.mark.parametrize("isize_matches", [False, True])
def test_huge_claims_fail_before_allocation(tmp_path, isize_matches):
    """A 4-byte header may claim 60000 x 60000 x 60000 bytes; the reader must refuse it without ever
    allocating more than a little (measured with tracemalloc)."""
    claimed = (60000, 60000, 60000)
    raw = tmp_path / "raw"
    raw.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", *claimed) + bytes(64))
    gz = tmp_path / "gz"
    gz.write_bytes(_lying_gzip(claimed, isize_matches))
    small = tmp_path / "small.gz"  # claims 30 kB (within deflate's ratio) but holds 64 bytes; trailer forged
    small.write_bytes(_lying_gzip((100, 300), isize_matches=True))
    tracemalloc.start()
    try:
        for path, match in (
            (raw, "the file holds"),
            (gz, "more than a .*-byte gzip file can hold"),
            (small, "truncated IDX data|corrupt gzip IDX file"),
        ):
            with pytest.raises(ValueError, match=match):
                read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_corrupt_gzip_and_missing_file(tmp_path):
    blob = bytearray(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8))))
    blob[20] ^= 0xFF
    (tmp_path / "c.gz").write_bytes(bytes(blob))
    # a flipped bit may break the deflate stream, its length or its checksum: any of them is named
    with pytest.raises(
        ValueError, match=r"c\.gz: (corrupt gzip IDX file|truncated|100 bytes of IDX data are followed)"
    ):
        read_idx(tmp_path / "c.gz")
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here")
