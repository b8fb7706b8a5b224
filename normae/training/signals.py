"""Which signals make a run checkpoint and which make it stop, and the errors that end a run.

A ``StopSignals`` object is handed to the Trainer (and to the stage functions that build one):
on any of its ``checkpoint`` signals every process writes the same checkpoint at the same
optimiser step; on its ``stop`` signals the run then raises ``TrainingInterrupted``. By default
SIGTERM and SIGINT (Ctrl-C) stop, SIGUSR1 and SIGUSR2 only checkpoint. A cluster job adds its
time-limit / preemption signal to ``stop``.
"""

from __future__ import annotations

import signal
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

    def stopped_by(self, seen) -> signal.Signals | None:
        """The signal to report as having stopped the run, given the signals any process ``seen``; None: go on."""
        stops = {signal.Signals(s) for s in seen} & {signal.Signals(s) for s in self.stop}
        if not stops:
            return None
        for preferred in STOP_PRIORITY:
            if preferred in stops:
                return preferred
        return min(stops)
