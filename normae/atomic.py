"""Files that are either whole or absent, and JSON reads that name the file (torch-free).

A killed process leaves either the old file or the new one, never half of one: every file of a run
folder, table input and spec is written through ``atomic_replace``.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from normae.errors import MissingResultError

TEMP_SUFFIX = ".tmp"  # atomic_replace writes ``<dir>/.<name>.<random>.tmp``, then renames it to ``<dir>/<name>``


def temporary_files(path: str | Path) -> list[Path]:
    """The temporary files of ``atomic_replace(path, ...)`` beside ``path``: a killed writer leaves them behind."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*{TEMP_SUFFIX}"))


def atomic_replace(path: str | Path, write) -> None:
    """Write through ``write(file_object)`` into a temporary file beside ``path``, then rename.

    A killed process leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
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


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: str | Path, missing: str | None = None) -> Any:
    """A JSON file's content; a missing file raises ``MissingResultError`` (with ``missing`` as the hint),
    an unreadable one names the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MissingResultError(f"{path} does not exist" + (f": {missing}" if missing else "")) from None
    except UnicodeDecodeError as error:
        raise MissingResultError(f"{path} is not valid JSON ({error}): delete it and rerun what writes it") from None
    except OSError as error:
        raise MissingResultError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise MissingResultError(f"{path} is not valid JSON ({error}): delete it and rerun what writes it") from None
