"""TensorBoard event files beside metrics.jsonl: every metrics line also as scalars (rank 0 only).

Optional: without the ``tensorboard`` package no event files are written and the run says so once.
Tags are ``<kind>/<name>`` (``step/loss``, ``epoch/loss_rec``, ``step/nor_grad_share``) at the
optimiser step. A resumed run starts its writer with ``purge_step`` one past the checkpoint's step,
so TensorBoard drops what the stopped session logged after it, as metrics.jsonl is cut there.

A run in the results layout is also linked as ``results/tensorboard/<stage>/<readable label>`` (its id
without digests), so ``tensorboard --logdir results/tensorboard`` names runs by what they are. The same
records go to W&B and MLflow where ``NORMAE_LOGGERS`` asks for them (normae.training.loggers).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from normae.paths import TENSORBOARD_DIR, readable_label, results_root_of
from normae.training.loggers import chosen_loggers, start_loggers

NOT_SCALARS = ("kind", "epoch", "step")
EVENT_FILES = "events.out.tfevents.*"  # what SummaryWriter names its files


def quiet_writer_threads() -> None:
    """Print no traceback for a failed TensorBoard writer thread: tensorboard raises its error again in the
    training thread at the next write (its ``_check_worker_status``), where it becomes the one-line error."""
    from tensorboard.summary.writer import event_file_writer

    worker = getattr(event_file_writer, "_AsyncWriterThread", None)  # private: where it is gone, change nothing
    previous = threading.excepthook
    if worker is None or getattr(previous, "quiet_for", None) is worker:
        return

    def hook(args) -> None:
        if not isinstance(args.thread, worker):
            previous(args)

    hook.quiet_for = worker  # type: ignore[attr-defined]
    threading.excepthook = hook


def link_for_tensorboard(folder: Path) -> Path | None:
    """Link ``folder`` (a run's event files) as ``results/tensorboard/<readable label>``; the link, or None
    for a run outside the results layout. A link to another folder under that name is replaced."""
    run = folder.parent
    root = results_root_of(run)
    if root is None:
        return None
    link = root / TENSORBOARD_DIR / readable_label(run.name)
    target = Path(os.path.relpath(folder, link.parent))
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return link
    link.parent.mkdir(parents=True, exist_ok=True)
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target, target_is_directory=True)
    os.replace(temporary, link)  # atomic: TensorBoard never sees a missing link
    return link


class EventLog:
    """Writes metrics records as TensorBoard scalars into ``folder`` (and to the other loggers chosen);
    does nothing off rank 0. ``spec`` is the run's config for W&B and its params for MLflow."""

    def __init__(self, folder: Path, rank: int = 0, log: Callable[[str], None] = print, spec: dict | None = None):
        self.folder, self.rank, self.log, self.spec = Path(folder), rank, log, spec or {}
        self.writer = None
        self.others: list = []  # W&B, MLflow: each has write(scalars, step) and close()

    def start(self, steps_done: int) -> None:
        """Open the writers for a session that continues after ``steps_done`` optimiser steps."""
        if self.rank != 0 or self.writer is not None or self.others:
            return
        names = chosen_loggers()
        self.others = start_loggers(names, self.folder.parent, self.spec, self.log)
        if "tensorboard" not in names:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises this when the tensorboard package is missing
            self.log("tensorboard is not installed: no TensorBoard event files (pip install tensorboard)")
            return
        self.writer = SummaryWriter(str(self.folder), purge_step=steps_done + 1, flush_secs=30)
        quiet_writer_threads()
        try:
            link_for_tensorboard(self.folder)
        except OSError as error:  # a file system without links: the event files are still in the run folder
            self.log(f"no link in {TENSORBOARD_DIR} for this run ({error}); its event files are in {self.folder}")

    @property
    def files(self) -> Path:
        """The event files, as a pattern (for messages)."""
        return self.folder / EVENT_FILES

    def write(self, record: dict) -> None:
        if self.writer is None and not self.others:
            return
        kind, step = record.get("kind", "metrics"), int(record["step"])
        scalars = {
            f"{kind}/{name}": value
            for name, value in record.items()
            if name not in NOT_SCALARS and isinstance(value, int | float)
        }
        for other in self.others:
            other.write(scalars, step)
        if self.writer is None:
            return
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        if kind == "epoch":
            self.writer.flush()  # the epoch's checkpoint follows: what it covers is on disk

    def close(self) -> None:
        """Flush and close; the writers are gone even where the last flush fails (a full disk), which is raised."""
        writer, self.writer = self.writer, None
        others, self.others = self.others, []
        try:
            if writer is not None:
                writer.close()
        finally:
            for other in others:
                other.close()
