"""A restricted unpickler for CIFAR-10's python batches: containers, bytes and numpy arrays only.

``pickle.load`` runs whatever callable a file names; a batch file received from someone else must not
be able to. Only the globals that a pickled ``numpy.ndarray`` needs are resolved; any other global raises
``pickle.UnpicklingError`` naming it, before anything is called.
"""

from __future__ import annotations

import codecs
import io
import pickle
from typing import Any, BinaryIO

import numpy as np

_RECONSTRUCT = np.ndarray(0).__reduce__()[0]  # numpy's array-rebuild function, without importing numpy.core


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 writes bytes into protocol-2 pickles, limited to latin-1."""
    try:
        latin1 = codecs.lookup(encoding).name == "iso8859-1"
    except LookupError:
        latin1 = False
    if not latin1:
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r} (only latin-1 is allowed)")
    return codecs.encode(text, "latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` admits only numpy array reconstruction."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays, bytes and plain containers are allowed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids in a data pickle")


def safe_load(file: BinaryIO | bytes) -> Any:
    """Unpickle ``file`` (a binary stream or bytes) with :class:`RestrictedUnpickler`, ``encoding="bytes"``."""
    stream = io.BytesIO(file) if isinstance(file, bytes) else file
    return RestrictedUnpickler(stream, encoding="bytes").load()
