"""Write a file whole or not at all (vaelib's atomic write: a temporary file beside it, then a
rename)."""

from __future__ import annotations

from pathlib import Path

import nbformat

from vaelib.atomic import atomic_write_bytes


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, creating its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)


def write_notebook_atomic(path: Path, nb: nbformat.NotebookNode) -> None:
    write_atomic(path, nbformat.writes(nb))
