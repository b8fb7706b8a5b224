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
import statistics
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from normae.errors import CheckpointError, RunFolderError
from normae.paths import RunFolder
from normae.training.checkpoint import atomic_save, capture_rng_state, load_checkpoint, restore_rng_state
from normae.training.runtime import autocast
from normae.training.sampling import SeededSamples, epoch_indices
from normae.training.schedule import LoopConfig, learning_rate
from normae.training.signals import NonFiniteLossError, StopSignals, TrainingInterrupted
from normae.training.state import LoopState

__all__ = ["LoopConfig", "NonFiniteLossError", "SeededSamples", "Trainer", "TrainingInterrupted", "learning_rate"]

TIMER_FLAG = "timer"  # the flag rank 0 raises when --checkpoint-minutes have passed


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def ignore_interrupts(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C (SIGINT to the whole process group) to the training process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Trainer:
    """Runs ``step_fn(model, batch) -> (loss, {name: scalar})`` over ``dataset`` for ``cfg.epochs``.

    Writes ``checkpoint.pt`` (every epoch, every ``checkpoint_minutes``, on ``signals.checkpoint``;
    then stops on ``signals.stop``) and ``metrics.jsonl`` into ``run_dir``; only rank 0 writes.
    ``epoch_end()`` (e.g. an evaluation) runs on every rank after each epoch; its numbers join that
    epoch's metrics line.
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
    ):
        self.model, self.cfg, self.step_fn, self.optimizer, self.device = (
            model,
            cfg,
            step_fn,
            optimizer,
            torch.device(device),
        )
        self.epoch_end = epoch_end
        self.signals = signals if signals is not None else StopSignals()
        self.samples = SeededSamples(dataset, cfg.seed, noise_length)
        self.run_dir = Path(run_dir)
        self.checkpoint_path = RunFolder(self.run_dir).checkpoint_path
        self.metrics_path = RunFolder(self.run_dir).metrics_path
        self.spec = spec or {}
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        per_rank = len(dataset) // self.world_size
        self.steps_per_epoch = per_rank // (cfg.batch_size * cfg.accum_iter)
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"{len(dataset)} images cannot fill one step of "
                f"{cfg.batch_size} x {cfg.accum_iter} x {self.world_size} (batch x accumulation x processes): "
                "lower the batch size or use more data"
            )
        self.state = LoopState()
        self.step_times: list[float] = []
        self.pending_signals: set[int] = set()  # received by this process since its last checkpoint

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
            }
            atomic_save(state, self.checkpoint_path)
        self.last_checkpoint_time = time.monotonic()

    def load(self, resume: bool) -> None:
        if not self.checkpoint_path.exists():
            if self.rank == 0:
                self.metrics_path.write_text("")
            return
        if not resume:
            raise RunFolderError(
                f"{self.checkpoint_path} exists: pass --resume to continue that run, "
                "or delete the run folder to start over"
            )
        state = load_checkpoint(self.checkpoint_path)
        if "loop" not in state:
            raise CheckpointError(
                f"{self.checkpoint_path} was written by an older normae (no 'loop' state) "
                "and cannot be resumed exactly: "
                "delete the run folder to start the run afresh"
            )
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.state = LoopState.from_dict(state["loop"])
        restore_rng_state(state["rng"][self.rank % len(state["rng"])])
        if self.rank == 0:
            lines = self.metrics_path.read_text().splitlines(keepends=True) if self.metrics_path.exists() else []
            self.metrics_path.write_text("".join(lines[: self.state.metrics_lines]))
        if self.state.epoch < self.cfg.epochs:
            self.log(f"resumed from {self.checkpoint_path} at {self.where()}")
        else:
            self.log(f"resumed from {self.checkpoint_path} after all {self.cfg.epochs} epochs")

    def write_metrics(self, record: dict) -> None:
        if self.rank == 0:
            with self.metrics_path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
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

    def loader(self, epoch: int) -> DataLoader:
        used = self.steps_per_epoch * self.cfg.accum_iter * self.cfg.batch_size
        order = epoch_indices(len(self.samples), epoch, self.cfg.seed, self.rank, self.world_size)[:used]
        keys = [(epoch, index) for index in order[self.state.batches_done * self.cfg.batch_size :]]
        return DataLoader(
            self.samples,
            batch_size=self.cfg.batch_size,
            sampler=keys,
            num_workers=self.cfg.num_workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.cfg.seed),
            worker_init_fn=ignore_interrupts,
        )

    def fit(self, resume: bool = False) -> dict:
        """Train (resuming from the checkpoint if ``resume``) to the last epoch; returns ``summary()``."""
        self.load(resume)
        self.last_checkpoint_time = time.monotonic()
        with self.signal_handlers():
            while self.state.epoch < self.cfg.epochs:
                self.run_epoch()
        return self.summary()

    def run_epoch(self) -> None:
        cfg, model, state = self.cfg, self.model, self.state
        model.train()
        batches_per_epoch = self.steps_per_epoch * cfg.accum_iter
        progress = self.progress_bar()
        group = self.optimizer.param_groups[0]
        lr = group["lr"] / group.get("lr_scale", 1.0)  # as the last step set it (restored on resume)
        step_start = time.perf_counter()
        for batch in self.loader(state.epoch):
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
                    raise NonFiniteLossError(
                        f"non-finite loss at {self.where()}: {record}. "
                        f"The last good checkpoint ({self.checkpoint_path}) is kept; lower the learning rate, "
                        "set --clip-grad, or use bf16 instead of fp16, then rerun with --resume"
                    )
                self.scaler.scale(loss / cfg.accum_iter).backward()
            state.add_batch(record)
            if not boundary:
                continue
            if cfg.clip_grad:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            state.optimizer_steps += 1
            elapsed = time.perf_counter() - step_start
            self.step_times.append(elapsed)
            state.train_seconds += elapsed
            step_start = time.perf_counter()
            if state.optimizer_steps % cfg.log_every == 0:
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

    def progress_bar(self):
        """A tqdm bar on a terminal; plain periodic lines otherwise (cluster logs)."""
        steps, label = self.steps_per_epoch, f"epoch {self.state.epoch + 1}/{self.cfg.epochs}"
        if self.rank == 0 and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=self.state.batches_done // self.cfg.accum_iter, desc=label, leave=False)

            def update(record, lr):
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
                if bar.n >= steps:
                    bar.close()

            return update

        def report(record, lr):
            if self.state.optimizer_steps % self.cfg.log_every == 0:
                self.log(
                    f"{label} step {self.state.optimizer_steps} lr {lr:.3e} "
                    + " ".join(f"{k}={v:.4g}" for k, v in record.items())
                )

        return report

    def summary(self) -> dict:
        """The run so far, from memory: final epoch means, counts, speed, and every epoch's record (``history``)."""
        median = statistics.median(self.step_times) if self.step_times else None
        effective_batch = self.cfg.batch_size * self.cfg.accum_iter * self.world_size
        return {
            "final": self.state.final_means(),
            "epochs": self.state.epoch,
            "optimizer_steps": self.state.optimizer_steps,
            "images_seen": self.state.optimizer_steps * effective_batch,
            "effective_batch": effective_batch,
            "world_size": self.world_size,
            "train_seconds": self.state.train_seconds,
            "step_time_median_s": median,
            "images_per_second": effective_batch / median if median else None,
            "history": [dict(record) for record in self.state.history],
        }
