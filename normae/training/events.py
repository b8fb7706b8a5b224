"""TensorBoard event files beside metrics.jsonl: every metrics line also as scalars (rank 0 only).

Optional: without the ``tensorboard`` package no event files are written and the run says so once.
Tags are ``<kind>/<name>`` (``step/loss``, ``epoch/loss_rec``, ``step/nor_grad_share``) at the
optimiser step. A resumed run starts its writer with ``purge_step`` one past the checkpoint's step,
so TensorBoard drops what the stopped session logged after it, as metrics.jsonl is cut there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

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


class EventLog:
    """Writes metrics records as TensorBoard scalars into ``folder``; does nothing off rank 0."""

    def __init__(self, folder: Path, rank: int = 0, log: Callable[[str], None] = print):
        self.folder, self.rank, self.log = Path(folder), rank, log
        self.writer = None

    def start(self, steps_done: int) -> None:
        """Open the writer for a session that continues after ``steps_done`` optimiser steps."""
        if self.rank != 0 or self.writer is not None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises this when the tensorboard package is missing
            self.log("tensorboard is not installed: no TensorBoard event files (pip install tensorboard)")
            return
        self.writer = SummaryWriter(str(self.folder), purge_step=steps_done + 1, flush_secs=30)
        quiet_writer_threads()

    @property
    def files(self) -> Path:
        """The event files, as a pattern (for messages)."""
        return self.folder / EVENT_FILES

    def write(self, record: dict) -> None:
        if self.writer is None:
            return
        kind, step = record.get("kind", "metrics"), int(record["step"])
        for name, value in record.items():
            if name not in NOT_SCALARS and isinstance(value, int | float):
                self.writer.add_scalar(f"{kind}/{name}", value, step)
        if kind == "epoch":
            self.writer.flush()  # the epoch's checkpoint follows: what it covers is on disk

    def close(self) -> None:
        """Flush and close; the writer is gone even where the last flush fails (a full disk), which is raised."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()
