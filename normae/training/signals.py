"""Which signals make a run checkpoint and which make it stop, and the errors that end a run.

A ``StopSignals`` object is handed to the Trainer (and to the stage functions that build one):
on any of its ``checkpoint`` signals every process writes the same checkpoint at the same
optimiser step; on its ``stop`` signals the run then raises ``TrainingInterrupted``. By default
SIGTERM and SIGINT (Ctrl-C) stop, SIGUSR1 and SIGUSR2 only checkpoint. A cluster job adds its
time-limit / preemption signal to ``stop``.

DataLoader workers ignore every signal the loop handles (``StopSignals.worker_init``): a signal to
the whole process group (Ctrl-C, SLURM's SIGTERM to every process of a job on preemption, scancel
or requeue) would otherwise kill them, and the run with them, before the training process has
written its checkpoint. The training process checkpoints, stops, and its workers then end with it.
A SIGTERM from the worker's own parent still ends it at once, as torch's workers do: that is how
the DataLoader (and Python's exit) terminates a worker that does not end by itself.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass

# When several processes saw different stop signals, the run reports the first of these it saw,
# then the lowest-numbered other one.
STOP_PRIORITY = (signal.SIGTERM, signal.SIGINT)


class NonFiniteLossError(RuntimeError):
    """A loss or metric became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Raised after a stop signal once the checkpoint is on disk.

    ``signal`` is the signal that stopped the run, the same on every process: SIGTERM if any
    process received one, else SIGINT if any did, else the lowest-numbered stop signal received.
    """

    def __init__(self, message: str, signum: int = signal.SIGTERM):
        super().__init__(message)
        self.signal = signal.Signals(signum)


def ignore_signals(signals: tuple[int, ...], worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: this worker ignores ``signals`` and leaves them to the training process.

    SIGTERM is not simply ignored: it is blocked, and a thread takes each one and tells who sent it;
    the worker's parent (the DataLoader terminating it) ends the worker, anyone else is ignored.
    """
    others = {signum for signum in signals if signum != signal.SIGTERM}
    for signum in others:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, others)  # blocked while the worker started (WorkerSignals.started)
    if signal.SIGTERM not in signals:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # before the thread starts: it inherits the mask

    def take_sigterm() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
                os._exit(0)  # as torch's own worker handler does for its parent's SIGTERM

    threading.Thread(target=take_sigterm, name="normae-worker-sigterm", daemon=True).start()


@dataclass(frozen=True)
class WorkerSignals:
    """A DataLoader ``worker_init_fn`` (``ignore_signals``) that also starts the loader's workers safely."""

    signals: tuple[int, ...]

    def __call__(self, worker_id: int) -> None:
        ignore_signals(self.signals, worker_id)

    def started(self, loader):
        """``iter(loader)`` with the signals blocked while its workers fork.

        A signal sent in that window (a group SIGTERM) then waits in the new worker until its init has
        taken the signals over, instead of killing the half-started worker and the run with it.
        """
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(self.signals))
        try:
            return iter(loader)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@dataclass(frozen=True)
class StopSignals:
    """``checkpoint``: signals that make every process checkpoint; ``stop``: those after which the run then stops.

    A stop signal is also a checkpoint signal, whether or not ``checkpoint`` names it.
    """

    checkpoint: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
    stop: frozenset[int] = frozenset({signal.SIGTERM, signal.SIGINT})

    @property
    def handled(self) -> tuple[signal.Signals, ...]:
        """Every signal the loop takes over while it runs, in a fixed order (the same on every process)."""
        return tuple(sorted({signal.Signals(s) for s in (*self.checkpoint, *self.stop)}))

    def worker_init(self) -> WorkerSignals:
        """The ``worker_init_fn`` for every DataLoader with workers while these signals are handled (picklable)."""
        return WorkerSignals(tuple(int(s) for s in self.handled))

    def stopped_by(self, seen) -> signal.Signals | None:
        """The signal to report as having stopped the run, given the signals any process ``seen``; None: go on."""
        stops = {signal.Signals(s) for s in seen} & {signal.Signals(s) for s in self.stop}
        if not stops:
            return None
        for preferred in STOP_PRIORITY:
            if preferred in stops:
                return preferred
        return min(stops)
