"""Atomic files and the random-number state that exact resume needs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from normae.errors import CheckpointError
from normae.paths import atomic_replace


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save`` that never leaves a half-written file under ``path``."""
    atomic_replace(Path(path), lambda handle: torch.save(obj, handle))


def load_checkpoint(path: str | Path) -> dict:
    """Load one of our checkpoints as data only (``weights_only``: a checkpoint is not code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}. Delete it to start the run afresh.") from error


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
