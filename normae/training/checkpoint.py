"""Atomic files and the random-number state that exact resume needs."""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from normae.atomic import atomic_replace
from normae.errors import CheckpointError, DiskFullError

# What a write that found the disk (or the user's quota) full reports.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# What a checkpoint holds only to resume training: a finished run drops it (its final weights, loop state,
# spec and inputs stay: what evaluations, teachers and the fingerprints read), unless this variable is 1.
RESUME_ONLY = ("optimizer", "scaler", "rng")
KEEP_RESUME_STATE = "NORMAE_KEEP_RESUME_STATE"


class _KeepsWriteErrors:
    """A file whose first failed write is kept: torch's zip writer reports a write that failed (a full disk)
    as ``RuntimeError: ... unexpected pos``, dropping the ``OSError`` that says why."""

    def __init__(self, handle):
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.handle.flush()


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save`` that never leaves a half-written file under ``path``; a full disk raises its ``OSError``."""

    def save(handle) -> None:
        kept = _KeepsWriteErrors(handle)
        try:
            torch.save(obj, kept)
        except RuntimeError:
            if kept.error is not None:
                raise kept.error from None
            raise

    atomic_replace(Path(path), save)


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Load one of our checkpoints as data only (``weights_only``: a checkpoint is not code).

    ``mmap``: map the tensors' storage instead of reading it, for a look at the small entries."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(error).__name__}: {load_error_detail(error)}): it is truncated "
            "or not a normae checkpoint; delete it to start the run afresh"
        ) from None
    if not isinstance(content, dict):
        raise CheckpointError(
            f"{path} holds a {type(content).__name__}, not a normae checkpoint; delete it to start the run afresh"
        )
    return content


@contextmanager
def disk_full_is_an_error(path: Path, checkpoint_path: Path, where: str) -> Iterator[None]:
    """A write of ``path`` (the checkpoint, metrics.jsonl) that finds the disk full ends the run with one line:
    the last checkpoint, ``checkpoint_path``, is kept (an atomic write leaves the old file whole, and a
    metrics line cut short is dropped on resume). ``where``: the loop's place, for the message."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        kept = (
            f"the last checkpoint ({checkpoint_path}) is kept: free some space, then rerun with --resume"
            if checkpoint_path.exists()
            else "no checkpoint was written yet: free some space, then run again"
        )
        strerror = error.strerror or "no space left on device"
        raise DiskFullError(f"the disk is full ({strerror}) writing {path} at {where}; {kept}") from None


def does_not_fit(path: Path, error: Exception) -> CheckpointError:
    """The error for a checkpoint whose content the model, optimiser or loop state cannot take."""
    detail = " ".join(str(error).split())
    return CheckpointError(
        f"{path} does not fit this run ({type(error).__name__}: {detail[:300]}{'...' if len(detail) > 300 else ''}): "
        "it was written by another model or another version of normae; delete it (or the run folder) to start "
        "the run afresh"
    )


def load_error_detail(error: Exception) -> str:
    """The line of a ``torch.load`` error that says what is wrong.

    torch's messages run over many lines; a weights-only refusal says what it refused after
    "WeightsUnpickler error:" (its advice to load with ``weights_only=False`` is never taken here:
    a checkpoint is not code).
    """
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= 200 else line[:200] + "..."


def capture_rng_state() -> dict:
    """Python, NumPy, torch CPU and CUDA generator states, as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def keeps_resume_state() -> bool:
    return os.environ.get(KEEP_RESUME_STATE, "").strip() in ("1", "true", "yes")


def drop_resume_state(path: Path) -> tuple[int, int] | None:
    """Rewrite a finished run's checkpoint without what only a resume reads (``RESUME_ONLY``: the optimiser's
    moments are twice the weights), atomically; (bytes before, after), or None where there is nothing to drop
    (no checkpoint, one already without it, or ``NORMAE_KEEP_RESUME_STATE=1``)."""
    if keeps_resume_state() or not path.exists():
        return None
    state = load_checkpoint(path)
    if not any(key in state for key in RESUME_ONLY):
        return None
    before = path.stat().st_size
    atomic_save({key: value for key, value in state.items() if key not in RESUME_ONLY}, path)
    return before, path.stat().st_size
