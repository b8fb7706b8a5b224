"""What every stage does to its run folder, and the settings every stage's spec shares.

The order matters: the folder's spec is checked before anything else, so a folder holding another
run is refused even when that run has finished; only then does a finished run return its summary.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.data import Subset

from normae.paths import RunFolder
from normae.training.loop import LoopConfig


def open_run_folder(spec, run_dir: str | Path) -> tuple[RunFolder, dict | None]:
    """(the run folder, its summary if the run has finished); a folder holding another spec is an error."""
    folder = RunFolder(run_dir)
    folder.check_spec(spec)
    summary = folder.read_summary()
    if summary is not None:
        print(f"[normae] {folder.path} is already finished ({folder.summary_path}); nothing to do", file=sys.stderr)
    return folder, summary


def start_run_folder(folder: RunFolder, spec, rank: int) -> None:
    """Rank 0 creates the folder and writes spec.json, first."""
    if rank == 0:
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_spec(spec)


def finish_run_folder(folder: RunFolder, rank: int, summary: dict) -> dict:
    """Rank 0 writes summary.json, last and atomically; every rank returns the summary."""
    if rank == 0:
        folder.write_summary(summary)
    return summary


def fixed_subset(dataset, size: int | None):
    """The same ``size`` images for every run (seed 0, whatever the run's seed), or all of them."""
    if size is None or size >= len(dataset):
        return dataset
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:size]
    return Subset(dataset, sorted(chosen.tolist()))


def loop_config(spec, world_size: int, amp: str) -> LoopConfig:
    """The loop settings every stage's spec carries; lr = blr x effective batch / 256 unless given."""
    effective_batch = spec.batch_size * spec.accum_iter * world_size
    return LoopConfig(
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        lr=spec.lr if spec.lr is not None else spec.blr * effective_batch / 256,
        accum_iter=spec.accum_iter,
        min_lr=spec.min_lr,
        warmup_epochs=spec.warmup_epochs,
        weight_decay=spec.weight_decay,
        amp=amp,
        clip_grad=spec.clip_grad,
        checkpoint_minutes=spec.checkpoint_minutes,
        num_workers=spec.num_workers,
        seed=spec.seed,
        log_every=spec.log_every,
    )
