"""Files that are either whole or absent: a killed process never leaves half of one (torch-free)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_replace(path: Path, write) -> None:
    """Write through ``write(file_object)`` into a temporary file beside ``path``, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_replace(Path(path), lambda handle: handle.write(text.encode()))
