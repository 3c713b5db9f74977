"""Atomic file writes: a crash or a full disk never leaves a half-written checkpoint, cache or report.

Write to a temporary file in the destination directory, fsync, then `os.replace` (atomic on POSIX).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write_with(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_with(path: str | os.PathLike, write: Callable) -> None:
    """Call `write(binary_file)` on a temp file next to `path`, then rename it over `path`.
    Works with writers that take a file object, e.g. `lambda f: torch.save(state, f)`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
