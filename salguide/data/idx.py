"""IDX files (the format of MNIST and Fashion-MNIST; LeCun et al., 1998), gzipped or raw, read safely.

Layout: a big-endian header of two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64) and the number of dimensions, then one big-endian uint32 per dimension, then
the data in C order. Images are ``0x00000803`` + [N, rows, cols], labels ``0x00000801`` + [N].

Nothing is allocated before the header has been checked against the file: a raw file must be exactly
header + data long; a gzip file must name the same uncompressed length in its trailer (ISIZE, modulo
2**32) and cannot claim more than deflate's largest ratio (1032:1) allows. The data are then read in
chunks, so memory follows what the stream really holds; a short or over-long stream is an error.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"
MAX_DEFLATE_RATIO = 1032  # no deflate stream expands by more than this factor
_CHUNK = 1 << 24


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _gzip_isize(path: Path) -> int:
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def _header(f, path: Path, ndim: int | None, type_code: int | None) -> tuple[int, tuple[int, ...]]:
    magic = f.read(4)
    if len(magic) < 4:
        raise ValueError(f"{path} is not an IDX file: it is shorter than the 4-byte magic number")
    zero, code, dims = magic[:2], magic[2], magic[3]
    if zero != b"\x00\x00" or code not in DTYPES:
        raise ValueError(
            f"{path} is not an IDX file: magic number 0x{magic.hex()} (expected 0x0000TTDD with type TT in "
            f"{', '.join(f'{c:02x}' for c in DTYPES)})"
        )
    if type_code is not None and code != type_code:
        raise ValueError(f"{path}: IDX type 0x{code:02x}, expected 0x{type_code:02x} ({np.dtype(DTYPES[type_code])})")
    if ndim is not None and dims != ndim:
        raise ValueError(f"{path}: IDX file has {dims} dimension(s), expected {ndim} (magic 0x{magic.hex()})")
    if dims == 0:
        raise ValueError(f"{path}: IDX file declares 0 dimensions")
    raw = f.read(4 * dims)
    if len(raw) < 4 * dims:
        raise ValueError(f"{path}: truncated IDX header ({dims} dimensions declared, file ends inside them)")
    return code, struct.unpack(f">{dims}I", raw)


def _read_exact(f, n: int, path: Path) -> bytearray:
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            raise ValueError(f"{path}: truncated IDX data: the header promises {n} bytes, the file holds {len(buf)}")
        buf += chunk
    if f.read(1):
        raise ValueError(f"{path}: {n} bytes of IDX data are followed by trailing bytes")
    return buf


def read_idx(path: str | os.PathLike, *, ndim: int | None = None, type_code: int | None = None) -> np.ndarray:
    """Read one IDX file (gzip detected from its content, not its name) into a native-endian array.

    ``ndim`` / ``type_code`` (e.g. 3 and 0x08 for images): refuse files that declare anything else.
    Raises ``FileNotFoundError`` or ``ValueError`` naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} does not exist")
    gz = _is_gzip(path)
    size = path.stat().st_size
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as f:
            code, shape = _header(f, path, ndim, type_code)
            dtype = np.dtype(DTYPES[code])
            header_len = 4 + 4 * len(shape)
            n = math.prod(shape) * dtype.itemsize
            desc = f"{' x '.join(map(str, shape))} {dtype.name}"
            if gz:
                if header_len + n > MAX_DEFLATE_RATIO * size:
                    raise ValueError(
                        f"{path}: header claims {desc} ({n} bytes), more than a {size}-byte gzip file can hold"
                    )
                isize = _gzip_isize(path)
                if isize != (header_len + n) % 2**32:
                    raise ValueError(
                        f"{path}: header claims {desc} = {header_len + n} bytes, the gzip trailer says {isize}"
                    )
            elif size != header_len + n:
                raise ValueError(f"{path}: header claims {desc} = {header_len + n} bytes, the file holds {size}")
            data = _read_exact(f, n, path)
    except (OSError, EOFError, zlib.error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{path}: corrupt {'gzip ' if gz else ''}IDX file ({err})") from err
    return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="), copy=False).reshape(shape)
