"""Write a file whole or not at all: a temporary file beside it, then an atomic rename.

The one implementation behind every file vaelib writes (checkpoints, downloads, curves,
evaluations) and the course's scripts: readers see the old file or the new one, never a partial
one (``os.replace`` is atomic on POSIX and Windows), and the new file gets the permissions the
umask gives (``0644`` under umask 022), not ``mkstemp``'s private ``0600``. Imports nothing from
vaelib, so any module can use it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "atomic_write_bytes", "current_umask"]


def current_umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[tuple[BinaryIO, Path]]:
    """Write ``path`` through a temporary file: ``with atomic_file(p) as (f, tmp): f.write(...)``.

    The temporary file ``.<name>.<random><suffix>`` lies in ``path``'s folder. When the block
    ends normally it is flushed to disk, given the umask's permissions and renamed onto ``path``;
    when the block raises, it is deleted and ``path`` is left as it was. ``tmp`` is its path (to
    check the content before it is published, after ``f.flush()``).
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it private: normal permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as (f, _):
        f.write(data)
