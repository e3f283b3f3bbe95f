"""A restricted unpickler for CIFAR-10's python batches: containers, bytes and numpy arrays only.

``pickle.load`` runs whatever callable a file names; a batch file received from someone else must not
be able to. Only the globals that a pickled ``numpy.ndarray`` needs are resolved; any other global raises
``pickle.UnpicklingError`` naming it, before anything is called.

Unpickling itself holds at most what the file spells out, but memo references let a small file share one
list many times, and converting that (``np.asarray``) expands every reference: a 98 KB file can become
gigabytes. :func:`expanded_size` counts what a conversion would produce, so callers can refuse a file
whose content expands beyond its own size before converting anything.
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


def expanded_size(obj: Any, limit: int) -> int:
    """Items reachable from ``obj`` counting every reference to a shared object again (container entries and
    array bytes): what converting ``obj`` to arrays would hold. Stops as soon as the count
    passes ``limit`` (cycles included), so it costs O(limit). A pickle without shared references spends at
    least one byte per item, so the count of an honest file never exceeds the file's size."""
    count, stack = 0, [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            items: Any = [*o.keys(), *o.values()]
        elif isinstance(o, (list, tuple)):
            items = o
        elif isinstance(o, np.ndarray):
            items = o.ravel().tolist() if o.dtype == object else ()
            count += 0 if o.dtype == object else o.nbytes
        else:
            continue
        count += len(items)
        if count > limit:
            return count
        stack.extend(items)
    return count


def safe_load(file: BinaryIO | bytes) -> Any:
    """Unpickle ``file`` (a binary stream or bytes) with :class:`RestrictedUnpickler`, ``encoding="bytes"``."""
    stream = io.BytesIO(file) if isinstance(file, bytes) else file
    return RestrictedUnpickler(stream, encoding="bytes").load()
