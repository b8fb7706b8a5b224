"""One training loop for every stage: schedule, AMP, accumulation, DDP, signals, checkpoints.

Exact resume rests on two rules. Every sample's randomness (augmentation, mask noise) is seeded
by (seed, epoch, index) (``normae.training.sampling``), so it does not depend on workers, world
size or where a run stopped. The rest (model-side randomness, optimiser, scaler, the loop's
``LoopState``) is saved at an optimiser-step boundary and restored as it was.

Epochs count from 0 inside the loop (``LoopState.epoch``) and from 1 wherever a person reads
them: metrics.jsonl's ``epoch`` field, log lines, error messages and summaries.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from normae.atomic import atomic_write_text
from normae.errors import CheckpointError, ConfigError, plain_worker_errors
from normae.paths import RunFolder
from normae.training.checkpoint import (
    KEEP_RESUME_STATE,
    RESUME_ONLY,
    atomic_save,
    capture_rng_state,
    disk_full_is_an_error,
    does_not_fit,
    load_checkpoint,
    restore_rng_state,
)
from normae.training.events import EventLog
from normae.training.progress import progress_reporter
from normae.training.runtime import autocast
from normae.training.sampling import SeededSamples, epoch_indices
from normae.training.schedule import LoopConfig, learning_rate
from normae.training.signals import NonFiniteLossError, StopSignals, TrainingInterrupted
from normae.training.state import LoopState

__all__ = ["LoopConfig", "NonFiniteLossError", "SeededSamples", "Trainer", "TrainingInterrupted", "learning_rate"]

TIMER_FLAG = "timer"  # the flag rank 0 raises when --checkpoint-minutes have passed


def unwrap(model: torch.nn.Module) -> torch.nn.Module:  # the plain module in torch.compile's and DDP's wrappers
    return unwrap(model._orig_mod) if hasattr(model, "_orig_mod") else getattr(model, "module", model)


def whole_record(line: str) -> bool:
    """Whether ``line`` is one whole metrics record: a JSON object ended by its newline."""
    if not line.endswith("\n"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


class Trainer:
    """Runs ``step_fn(model, batch) -> (loss, {name: scalar})`` over ``dataset`` for ``cfg.epochs``.

    Writes ``checkpoint.pt`` (every epoch, every ``checkpoint_minutes``, on ``signals.checkpoint``;
    then stops on ``signals.stop``) and ``metrics.jsonl`` into ``run_dir``; only rank 0 writes.
    ``epoch_end()`` (e.g. an evaluation) runs on every rank after each epoch; its numbers join that
    epoch's metrics line.

    ``inputs`` (what the run is made from: ``normae.stages.inputs.run_inputs``) are saved in
    the checkpoint (``inputs``), where ``normae.stages.common.decide`` compares them. ``fit(resume)`` follows the
    caller's decision: continue from the checkpoint, or start afresh (an empty metrics.jsonl).

    ``step_line_metrics``: metrics measured on some steps only (pre-training's diagnostics,
    ``normae.core.diagnostics``); a step whose record carries one is written as a ``step`` line whatever
    ``log_every`` says, so metrics.jsonl keeps every sample.
    """

    def __init__(
        self,
        model,
        dataset,
        cfg: LoopConfig,
        run_dir,
        step_fn: Callable,
        optimizer,
        device,
        noise_length=None,
        spec=None,
        epoch_end=None,
        signals: StopSignals | None = None,
        inputs: dict[str, str | None] | None = None,
        step_line_metrics: Iterable[str] = (),
    ):
        self.model, self.cfg, self.step_fn, self.optimizer = model, cfg, step_fn, optimizer
        self.step_line_metrics = frozenset(step_line_metrics)
        self.device = torch.device(device)
        self.epoch_end = epoch_end
        self.signals = signals if signals is not None else StopSignals()
        self.samples = SeededSamples(dataset, cfg.seed, noise_length)
        self.run_dir = Path(run_dir)
        self.checkpoint_path = RunFolder(self.run_dir).checkpoint_path
        self.metrics_path = RunFolder(self.run_dir).metrics_path
        self.spec = spec or {}
        self.inputs = inputs or {}
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.events = EventLog(RunFolder(self.run_dir).events_dir, self.rank, self.log, spec=self.spec)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        per_rank = len(dataset) // self.world_size
        self.steps_per_epoch = per_rank // (cfg.batch_size * cfg.accum_iter)
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"{len(dataset)} images cannot fill one step of "
                f"{cfg.batch_size} x {cfg.accum_iter} x {self.world_size} (batch x accumulation x processes): "
                "lower the batch size or use more data"
            )
        self.state = LoopState()
        self.pending_signals: set[int] = set()  # received by this process since its last checkpoint
        self.batches: Generator | None = None  # the epoch's batches, while its DataLoader (and workers) run

    def where(self) -> str:
        """The epoch (from 1) and optimiser step the loop is at, for messages."""
        return f"epoch {self.state.epoch + 1}/{self.cfg.epochs}, step {self.state.optimizer_steps}"

    # ---- state on disk -------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        rng = capture_rng_state()
        if self.distributed:
            gathered = [None] * self.world_size
            dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        if self.rank == 0:
            state = {
                "model": unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "loop": self.state.to_dict(),
                "rng": gathered,
                "spec": self.spec,
                "inputs": self.inputs,
            }
            with self.disk_full_is_an_error(self.checkpoint_path):
                atomic_save(state, self.checkpoint_path)
        self.last_checkpoint_time = time.monotonic()

    def disk_full_is_an_error(self, path: Path):
        return disk_full_is_an_error(path, self.checkpoint_path, self.where())

    def load(self, resume: bool) -> None:
        if self.rank == 0:
            for stale in RunFolder(self.run_dir).remove_stale_temporaries():
                self.log(f"removed {stale}, left by a write that was killed")
        if not resume:
            if self.rank == 0:
                with self.disk_full_is_an_error(self.metrics_path):
                    atomic_write_text(self.metrics_path, "")
            return
        state = load_checkpoint(self.checkpoint_path)
        if "loop" not in state:
            raise CheckpointError(
                f"{self.checkpoint_path} was written by an older normae (no 'loop' state) "
                "and cannot be resumed exactly: "
                "delete the run folder to start the run afresh"
            )
        resumable = all(key in state for key in RESUME_ONLY)  # a finished run's final checkpoint has none
        try:
            unwrap(self.model).load_state_dict(state["model"])
            self.state = LoopState.from_dict(state["loop"])
            if resumable:
                self.optimizer.load_state_dict(state["optimizer"])
                self.scaler.load_state_dict(state["scaler"])
                restore_rng_state(state["rng"][self.rank % len(state["rng"])])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise does_not_fit(self.checkpoint_path, error) from None
        if not resumable and self.state.epoch < self.cfg.epochs:
            raise CheckpointError(
                f"{self.checkpoint_path} holds a finished run's final weights without its optimiser state "
                f"(trained {self.state.epoch} of {self.cfg.epochs} epochs): it cannot be trained on; delete the "
                f"run folder to train again (set {KEEP_RESUME_STATE}=1 to keep what a resume needs)"
            )
        if self.rank == 0:  # cut the lines logged after the checkpoint, atomically (a kill leaves the old file)
            self.cut_metrics_to_checkpoint()
        if self.state.epoch < self.cfg.epochs:
            self.log(f"resumed from {self.checkpoint_path} at {self.where()}")
        else:
            self.log(f"resumed from {self.checkpoint_path} after all {self.cfg.epochs} epochs")

    def cut_metrics_to_checkpoint(self) -> None:
        """metrics.jsonl back to the records the checkpoint counts, each whole: a line cut short or not JSON
        (a file damaged after the checkpoint was written) ends the kept records there, and the count follows,
        so the next record starts on a line of its own."""
        lines = self.metrics_path.read_text().splitlines(keepends=True) if self.metrics_path.exists() else []
        counted = lines[: self.state.metrics_lines]
        kept = next((i for i, line in enumerate(counted) if not whole_record(line)), len(counted))
        if kept < self.state.metrics_lines:
            self.log(
                f"{self.metrics_path}: {self.state.metrics_lines - kept} of the {self.state.metrics_lines} records "
                f"the checkpoint counts are cut short, corrupt or missing; kept the {kept} whole ones before them"
            )
            self.state.metrics_lines = kept
        with self.disk_full_is_an_error(self.metrics_path):
            atomic_write_text(self.metrics_path, "".join(counted[:kept]))

    def write_metrics(self, record: dict) -> None:
        if self.rank == 0:
            with self.disk_full_is_an_error(self.metrics_path), self.metrics_path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            with self.disk_full_is_an_error(self.events.files):
                self.events.write(record)
        self.state.metrics_lines += 1

    def log(self, message: str) -> None:
        if self.rank == 0:
            print(f"[normae] {message}", file=sys.stderr, flush=True)

    # ---- signals -------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        if signum == signal.SIGINT and signal.SIGINT in self.pending_signals:
            raise KeyboardInterrupt  # a second Ctrl-C before the checkpoint: stop at once
        self.pending_signals.add(signum)

    @contextmanager
    def signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in self.signals.handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # ---- the loop ------------------------------------------------------------------------
    def reduce(
        self, metrics: dict[str, torch.Tensor], flags: dict[str, bool]
    ) -> tuple[dict[str, float], dict[str, bool]]:
        """Each metric's mean over processes, and for each flag whether any process raised it.

        One all-reduce for both: the metrics and the flags travel in one tensor and come back by name.
        """
        names, flag_names = list(metrics), list(flags)
        device = metrics[names[0]].device
        packed = torch.stack(
            [metrics[name].detach().float() for name in names]
            + [torch.tensor(float(flags[name]), device=device) for name in flag_names]
        )
        if self.distributed:
            dist.all_reduce(packed)
            packed[: len(names)] /= self.world_size
        values = packed.tolist()
        means = dict(zip(names, values[: len(names)]))
        raised = {name: value > 0 for name, value in zip(flag_names, values[len(names) :])}
        return means, raised

    def epoch_order(self, epoch: int) -> list[int]:
        """This process's sample indices of ``epoch``'s whole steps, less the batches already done."""
        used = self.steps_per_epoch * self.cfg.accum_iter * self.cfg.batch_size
        order = epoch_indices(len(self.samples), epoch, self.cfg.seed, self.rank, self.world_size)[:used]
        return order[self.state.batches_done * self.cfg.batch_size :]

    def loader(self, epoch: int) -> Iterable:
        """The epoch's batches from where the loop stands (a subclass may read them otherwise: DaliTrainer)."""
        keys = [(epoch, index) for index in self.epoch_order(epoch)]
        return DataLoader(
            self.samples,
            batch_size=self.cfg.batch_size,
            sampler=keys,
            num_workers=self.cfg.num_workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.cfg.seed),
            worker_init_fn=self.signals.worker_init(),
        )

    def fit(self, resume: bool = False) -> dict:
        """Train (continuing from checkpoint.pt if ``resume``, else afresh) to the last epoch; returns ``summary()``."""
        self.load(resume)
        self.events.start(self.state.optimizer_steps)
        self.last_checkpoint_time = time.monotonic()
        with self.signal_handlers():
            try:
                while self.state.epoch < self.cfg.epochs:
                    self.run_epoch()
            finally:  # the workers end now (they ignore SIGTERM: not to be left to the interpreter's exit)
                with self.disk_full_is_an_error(self.events.files):
                    self.events.close()
                if self.batches is not None:
                    self.batches.close()
        return self.summary()

    def run_epoch(self) -> None:
        cfg, model, state = self.cfg, self.model, self.state
        model.train()
        batches_per_epoch = self.steps_per_epoch * cfg.accum_iter
        progress = progress_reporter(self.state, self.cfg, self.steps_per_epoch, self.rank, self.log, self.world_size)
        group = self.optimizer.param_groups[0]
        lr = group["lr"] / group.get("lr_scale", 1.0)  # as the last step set it (restored on resume)
        step_start = time.perf_counter()
        self.batches = plain_worker_errors(self.signals.worker_init().started(self.loader(state.epoch)))
        # the step's forward passes: its line holds their mean, whatever the split into passes and processes
        step_sums: dict[str, float] = {}
        step_counts: dict[str, int] = {}
        for batch in self.batches:
            if state.batches_done % cfg.accum_iter == 0:
                lr = learning_rate(state.epoch + state.batches_done / batches_per_epoch, cfg)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
            boundary = (state.batches_done + 1) % cfg.accum_iter == 0
            batch = [item.to(self.device, non_blocking=True) for item in batch]
            sync = nullcontext() if boundary or not self.distributed else model.no_sync()
            with sync:
                with autocast(cfg.amp, self.device):
                    loss, metrics = self.step_fn(model, batch)
                # queued before the one host synchronisation of the pass (reduce): the device never waits for it
                self.scaler.scale(loss / cfg.accum_iter).backward()
                due = (
                    cfg.checkpoint_minutes > 0
                    and time.monotonic() - self.last_checkpoint_time >= cfg.checkpoint_minutes * 60
                )
                received = set(self.pending_signals)
                flags = {
                    TIMER_FLAG: due and self.rank == 0,
                    **{sig.name: sig in received for sig in self.signals.handled},
                }
                record, raised = self.reduce({"loss": loss, **metrics}, flags)
                if not all(math.isfinite(v) for v in record.values()):
                    kept = "is kept" if self.checkpoint_path.exists() else "does not exist yet (none was written)"
                    raise NonFiniteLossError(
                        f"non-finite loss at {self.where()}: {record}. "
                        f"The last good checkpoint ({self.checkpoint_path}) {kept}; lower the learning rate, "
                        "set --clip-grad, or use bf16 instead of fp16, then rerun with --resume"
                    )
            state.add_batch(record)
            for name, value in record.items():
                step_sums[name] = step_sums.get(name, 0.0) + value
                step_counts[name] = step_counts.get(name, 0) + 1
            if not boundary:
                continue
            record = {name: total / step_counts[name] for name, total in step_sums.items()}
            step_sums, step_counts = {}, {}
            if cfg.clip_grad:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            state.optimizer_steps += 1
            elapsed = time.perf_counter() - step_start
            state.add_step_time(elapsed)
            state.train_seconds += elapsed
            step_start = time.perf_counter()
            if state.optimizer_steps % cfg.log_every == 0 or not self.step_line_metrics.isdisjoint(record):
                self.write_metrics(
                    {"kind": "step", "epoch": state.epoch + 1, "step": state.optimizer_steps, "lr": lr, **record}
                )
            progress(record, lr)
            seen = {sig for sig in self.signals.handled if raised[sig.name]}  # by any process
            if raised[TIMER_FLAG] or seen:
                self.checkpoint_now(seen, received)
        means = state.epoch_means()
        if self.epoch_end is not None:
            means.update(self.epoch_end())
        epoch_record = {"epoch": state.epoch + 1, "step": state.optimizer_steps, "lr": lr, **means}
        self.write_metrics({"kind": "epoch", **epoch_record})
        self.log(f"epoch {state.epoch + 1}/{cfg.epochs} " + " ".join(f"{k}={v:.4g}" for k, v in means.items()))
        state.finish_epoch(epoch_record)
        self.save_checkpoint()

    def checkpoint_now(self, seen: set[signal.Signals], received: set[int]) -> None:
        """Write the checkpoint that the timer or the signals ``seen`` (by any process) asked for; stop if one says so.

        ``received``: this process's signals that the step's flags reported; later ones stay pending.
        """
        self.pending_signals -= received
        self.save_checkpoint()
        reason = ", ".join(sig.name for sig in sorted(seen)) or "timer"
        self.log(f"checkpoint written ({reason}) at {self.where()}")
        stopped_by = self.signals.stopped_by(seen)
        if stopped_by is not None:
            raise TrainingInterrupted(
                f"stopped by {stopped_by.name} at {self.where()}; "
                f"checkpoint saved in {self.checkpoint_path}: rerun the same command with --resume to continue",
                stopped_by,
            )

    def summary(self) -> dict:
        """The run so far, from memory (see ``LoopState.summary``)."""
        return self.state.summary(self.cfg.batch_size * self.cfg.accum_iter * self.world_size, self.world_size)
