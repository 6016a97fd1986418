"""Result files are replaced whole, never rewritten in place.

A sweep rewrites its files (``trials.csv``, ``optimization_results.yaml``, the plots) after every
trial; a sweeper killed mid-write, or a disk that fills up, must leave the previous file, not half
of a new one. Each file is written to a temporary file beside it, synced, and moved over the old one
with ``os.replace`` (atomic on one file system); a failed write removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def replaced_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to (for writers that want a path);
    it replaces ``path`` when the block ends without an error."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def replaced(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """An open file whose content replaces ``path`` when the block ends without an error."""
    with replaced_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with replaced(path, encoding="utf-8") as fh:
        fh.write(text)
