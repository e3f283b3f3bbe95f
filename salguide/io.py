"""Safe file output: everything salguide writes appears whole or not at all.

Temporary files are named ``.<target>.<host>-<pid>.<random>.tmp`` so that ``clean_stale_temporaries``
can tell the leftovers of a killed writer (its process is gone) from a write in progress. Run folders
are claimed with ``owned_dir`` so that no run writes into a folder a live run owns.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
_TMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[^.]+\.tmp$")
STALE_AFTER_S = 24 * 3600  # a temporary of another host (or of unknown origin) this old is abandoned
OWNER_FILE = ".salguide-run"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place with ``os.replace``.

    On any exception the temporary file is removed and ``path`` is left as it was (absent, or its
    previous content), so a crash never leaves a half-written mask, checkpoint or result table.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale_temporaries(directory: str | os.PathLike, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete the ``atomic_path`` temporaries in ``directory`` whose writer is gone; return them.

    A temporary is stale when this host wrote it and its process no longer runs, or when it is older than
    ``max_age_s`` (written on another host, or not named by ``atomic_path``).
    """
    removed = []
    now = time.time()
    for tmp in Path(directory).glob(".*.tmp"):
        m = _TMP.match(tmp.name)
        try:
            stale = (m is not None and m["host"] == _HOST and not _alive(int(m["pid"]))) or (
                now - tmp.stat().st_mtime > max_age_s
            )
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # its writer finished or another cleaner came first
            continue
    return removed


def check_writable(directory: str | os.PathLike, key: str) -> Path:
    """Create ``directory`` if needed and write a probe file there; raise ``ValueError`` naming ``key`` if
    that fails, so an unusable output or cache folder is reported before any training."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".salguide-probe-"):
            pass
    except OSError as err:
        raise ValueError(f"{key}={str(directory)!r} is not a writable folder: {err}") from err
    return path


@contextmanager
def owned_dir(directory: str | os.PathLike) -> Iterator[Path]:
    """Own ``directory`` for the block through an ``OWNER_FILE`` (hard-linked into place, so it appears with
    its content or not at all); refuse a folder that a live run owns (a run of another host counts as
    live: it cannot be checked). A dead run's claim is taken over."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / OWNER_FILE
    claim = path / f"{OWNER_FILE}.{_HOST}-{os.getpid()}.claim"
    claim.write_text(f"{_HOST} {os.getpid()}")
    try:
        while True:
            try:
                os.link(claim, marker)
                break
            except FileExistsError:
                try:
                    owner = marker.read_text().split()
                except FileNotFoundError:  # released meanwhile
                    continue
                host, pid = (owner + ["?", "?"])[:2]
                if host != _HOST or not pid.isdigit() or _alive(int(pid)):
                    raise RuntimeError(
                        f"output folder {path} belongs to another live run ({host} pid {pid}); choose another "
                        f"hydra.run.dir, or delete {marker} if that run is gone"
                    ) from None
                marker.unlink(missing_ok=True)
    finally:
        claim.unlink(missing_ok=True)
    try:
        yield path
    finally:
        marker.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def atomic_write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write dict ``rows`` as CSV with a header (columns in order of first appearance; missing cells empty)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")
