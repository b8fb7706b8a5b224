"""Where a training loop stands: counters, the running epoch sums and the epochs already done.

The Trainer saves a ``LoopState`` into the checkpoint as one object (key ``"loop"``) and restores
it as one object, so a resumed run continues from the same counters and still knows the records
of the epochs before the stop (``history``), which its summary and the best-epoch choice use.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field

# The fields of an epoch record that are not metrics.
RECORD_FIELDS = ("epoch", "step", "lr")


STEP_TIMES_KEPT = 1000  # enough for a stable median; a checkpoint stays small


@dataclass
class LoopState:
    """Counters count from 0: ``epoch`` is the number of epochs finished (the index of the one in progress).

    ``history`` holds one record per finished epoch, as its ``metrics.jsonl`` line without
    ``kind``: ``{"epoch": n (from 1), "step": optimiser steps so far, "lr": ..., **epoch means}``.
    """

    epoch: int = 0
    batches_done: int = 0  # batches of the epoch in progress already trained on
    optimizer_steps: int = 0
    metrics_lines: int = 0  # lines of metrics.jsonl that belong to this state (the rest are cut on resume)
    epoch_sums: dict[str, float] = field(default_factory=dict)
    epoch_count: int = 0  # batches summed into epoch_sums
    epoch_counts: dict[str, int] = field(default_factory=dict)  # per metric, where not every batch has it
    train_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    # the last STEP_TIMES_KEPT optimiser steps' seconds: in the checkpoint, so the summary a resume after the
    # last epoch rewrites still has its speed
    step_times: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain values only (a checkpoint is loaded with ``weights_only``)."""
        data = dataclasses.asdict(self)
        data["history"] = [dict(record) for record in self.history]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LoopState:
        names = {f.name for f in dataclasses.fields(cls)}
        data = {"epoch_counts": {}, "step_times": [], **data}  # checkpoints from before these were kept
        missing, unknown = sorted(names - set(data)), sorted(set(data) - names)
        if missing or unknown:
            raise ValueError(f"not a loop state: missing {missing}, unknown {unknown}")
        return cls(
            **{
                **data,
                "epoch_sums": dict(data["epoch_sums"]),
                "epoch_counts": dict(data["epoch_counts"]),
                "history": [dict(r) for r in data["history"]],
                "step_times": list(data["step_times"]),
            }
        )

    def add_batch(self, values: dict[str, float]) -> None:
        """Count one trained batch and add its (process-mean) metrics to the epoch's sums."""
        self.batches_done += 1
        for name, value in values.items():
            self.epoch_sums[name] = self.epoch_sums.get(name, 0.0) + value
            self.epoch_counts[name] = self.epoch_counts.get(name, 0) + 1
        self.epoch_count += 1

    def epoch_means(self) -> dict[str, float]:
        """Each metric's mean over the batches that had it (the diagnostics are measured on some only)."""
        return {name: total / self.epoch_counts.get(name, self.epoch_count) for name, total in self.epoch_sums.items()}

    def finish_epoch(self, record: dict) -> None:
        """Keep the finished epoch's record and start the next epoch."""
        self.history.append(dict(record))
        self.epoch += 1
        self.batches_done, self.epoch_sums, self.epoch_count, self.epoch_counts = 0, {}, 0, {}

    def final_means(self) -> dict[str, float]:
        """The last finished epoch's metrics (empty before the first one)."""
        if not self.history:
            return {}
        return {k: v for k, v in self.history[-1].items() if k not in RECORD_FIELDS}

    def add_step_time(self, seconds: float) -> None:
        self.step_times.append(seconds)
        del self.step_times[:-STEP_TIMES_KEPT]

    def summary(self, effective_batch: int, world_size: int) -> dict:
        """The run so far: final epoch means, counts, speed (the median of the last steps), every epoch's record."""
        median = statistics.median(self.step_times) if self.step_times else None
        return {
            "final": self.final_means(),
            "epochs": self.epoch,
            "optimizer_steps": self.optimizer_steps,
            "images_seen": self.optimizer_steps * effective_batch,
            "effective_batch": effective_batch,
            "world_size": world_size,
            "train_seconds": self.train_seconds,
            "step_time_median_s": median,
            "images_per_second": effective_batch / median if median else None,
            "history": [dict(record) for record in self.history],
        }
