"""One training loop for every stage: schedule, AMP, accumulation, DDP, signals, checkpoints.

Exact resume rests on two rules. Every sample's randomness (augmentation, mask noise) is seeded
by (seed, epoch, index), so it does not depend on workers, world size or where a run stopped.
The rest (model-side randomness, optimiser, scaler, counters) is saved at an optimiser-step
boundary and restored as it was.
"""

from __future__ import annotations

import ctypes
import json
import math
import random
import signal
import statistics
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from normae.training.checkpoint import atomic_save, capture_rng_state, load_checkpoint, restore_rng_state

CHECKPOINT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
# After its checkpoint, a run stops on these signals and goes on after the others.
_stop_signals = {signal.SIGTERM}


class NonFiniteLossError(RuntimeError):
    pass


class TrainingInterrupted(RuntimeError):
    """Raised after a stop signal (SIGTERM unless ``stop_on`` adds others) once the checkpoint is on disk.

    ``signal`` is the signal that stopped the run: SIGTERM if any process received one.
    """

    def __init__(self, message: str, signum: int = signal.SIGTERM):
        super().__init__(message)
        self.signal = signal.Signals(signum)


@contextmanager
def stop_on(*signals: int):
    """Within this block, ``signals`` also stop a run once its checkpoint is written.

    A cluster job uses it for its time-limit / preemption signal: every process writes the same
    checkpoint at the same step, then the job requeues itself.
    """
    added = set(signals) - _stop_signals
    _stop_signals.update(added)
    try:
        yield
    finally:
        _stop_signals.difference_update(added)


@dataclass
class LoopConfig:
    epochs: int
    batch_size: int
    lr: float
    accum_iter: int = 1
    min_lr: float = 0.0
    warmup_epochs: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    amp: str = "none"
    clip_grad: float | None = None
    checkpoint_minutes: float = 0.0
    num_workers: int = 0
    seed: int = 0
    log_every: int = 20


def learning_rate(epoch: float, cfg: LoopConfig) -> float:
    """Linear warm-up, then half-cycle cosine to ``min_lr``; ``epoch`` is fractional."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * epoch / cfg.warmup_epochs
    progress = (epoch - cfg.warmup_epochs) / max(cfg.epochs - cfg.warmup_epochs, 1e-12)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 1_000_000_007 + index) % (2**63)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the system.

    By default much of what a CPU training step frees goes back to the kernel, and the next
    step faults it in again; on virtual machines that costs a fifth of a step (measured for
    vit_micro at batch 64: 0.72 s -> 0.58 s per step, page faults 355k -> 66k over 10 steps).
    Returns False where there is no glibc (macOS, musl): nothing changes there.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    top_pad, mmap_threshold = -2, -3  # M_TOP_PAD, M_MMAP_THRESHOLD in <malloc.h>
    keep_at_heap_top = 512 * 2**20
    largest_heap_block = 32 * 2**20  # glibc refuses an mmap threshold above half its heap size (64 MiB)
    return bool(libc.mallopt(top_pad, keep_at_heap_top)) and bool(libc.mallopt(mmap_threshold, largest_heap_block))


def seed_everything(seed: int) -> None:
    """Seed torch, NumPy and Python: model initialisation and batch-level draws (timm's Mixup uses NumPy)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@contextmanager
def seeded_randomness(seed: int):
    """Run a block with torch, NumPy and Python generators seeded, then put them back as they were."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class SeededSamples(Dataset):
    """Items keyed by ``(epoch, index)``; each sample's randomness depends on nothing else.

    With ``noise_length`` every item also carries the uniform noise (length L) that fixes its mask.
    """

    def __init__(self, dataset: Dataset, seed: int, noise_length: int | None = None):
        self.dataset, self.seed, self.noise_length = dataset, seed, noise_length

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        with seeded_randomness(sample_seed(self.seed, epoch, index)):
            image, target = self.dataset[index]
            if self.noise_length is None:
                return image, target
            return image, target, torch.rand(self.noise_length)


def epoch_indices(length: int, epoch: int, seed: int, rank: int, world_size: int) -> list[int]:
    """This process's sample order for one epoch (DistributedSampler's, also for one process)."""
    sampler = DistributedSampler(range(length), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return list(sampler)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


class Trainer:
    """Runs ``step_fn(model, batch) -> (loss, {name: scalar})`` over ``dataset`` for ``cfg.epochs``.

    Writes ``checkpoint.pt`` (every epoch, every ``checkpoint_minutes``, on SIGTERM/SIGUSR1/SIGUSR2)
    and ``metrics.jsonl`` into ``run_dir``; only rank 0 writes. ``epoch_end()`` (e.g. an
    evaluation) runs on every rank after each epoch; its numbers join that epoch's metrics line.
    """

    def __init__(
        self, model, dataset, cfg: LoopConfig, run_dir, step_fn: Callable, optimizer, device, noise_length=None, spec=None, epoch_end=None
    ):
        self.model, self.cfg, self.step_fn, self.optimizer, self.device = model, cfg, step_fn, optimizer, torch.device(device)
        self.epoch_end = epoch_end
        self.samples = SeededSamples(dataset, cfg.seed, noise_length)
        self.run_dir = Path(run_dir)
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.spec = spec or {}
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        per_rank = len(dataset) // self.world_size
        self.steps_per_epoch = per_rank // (cfg.batch_size * cfg.accum_iter)
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"{len(dataset)} images cannot fill one step of {cfg.batch_size} x {cfg.accum_iter} x {self.world_size} "
                "(batch x accumulation x processes): lower the batch size or use more data"
            )
        self.epoch, self.batches_done, self.optimizer_steps, self.metrics_lines = 0, 0, 0, 0
        self.epoch_sums: dict[str, float] = {}
        self.epoch_count = 0
        self.train_seconds = 0.0
        self.step_times: list[float] = []
        self.pending_signal: int | None = None

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
                "epoch": self.epoch,
                "batches_done": self.batches_done,
                "optimizer_steps": self.optimizer_steps,
                "metrics_lines": self.metrics_lines,
                "epoch_sums": dict(self.epoch_sums),
                "epoch_count": self.epoch_count,
                "train_seconds": self.train_seconds,
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
            raise FileExistsError(
                f"{self.checkpoint_path} exists: pass --resume to continue that run, or delete the run folder to start over"
            )
        state = load_checkpoint(self.checkpoint_path)
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        for name in ("epoch", "batches_done", "optimizer_steps", "metrics_lines", "epoch_sums", "epoch_count", "train_seconds"):
            setattr(self, name, state[name])
        restore_rng_state(state["rng"][self.rank % len(state["rng"])])
        if self.rank == 0:
            lines = self.metrics_path.read_text().splitlines(keepends=True) if self.metrics_path.exists() else []
            self.metrics_path.write_text("".join(lines[: self.metrics_lines]))
        self.log(f"resumed from {self.checkpoint_path} at epoch {self.epoch}, step {self.optimizer_steps}")

    def write_metrics(self, record: dict) -> None:
        if self.rank == 0:
            with self.metrics_path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        self.metrics_lines += 1

    def log(self, message: str) -> None:
        if self.rank == 0:
            print(f"[normae] {message}", file=sys.stderr, flush=True)

    # ---- signals -------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        self.pending_signal = signum

    @contextmanager
    def signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in CHECKPOINT_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # ---- the loop ------------------------------------------------------------------------
    def reduce(self, values: list[torch.Tensor], flags: list[float]) -> list[float]:
        """Mean of ``values`` over processes and the sum of ``flags`` (> 0 if any process raised one), as floats."""
        packed = torch.stack([v.detach().float() for v in values] + [torch.tensor(f, device=values[0].device) for f in flags])
        if self.distributed:
            dist.all_reduce(packed)
            packed[: len(values)] /= self.world_size
        return packed.tolist()

    def autocast(self):
        if self.cfg.amp in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16
            return torch.autocast(self.device.type, dtype=dtype)
        return nullcontext()

    def loader(self, epoch: int) -> DataLoader:
        used = self.steps_per_epoch * self.cfg.accum_iter * self.cfg.batch_size
        order = epoch_indices(len(self.samples), epoch, self.cfg.seed, self.rank, self.world_size)[:used]
        keys = [(epoch, index) for index in order[self.batches_done * self.cfg.batch_size :]]
        return DataLoader(
            self.samples,
            batch_size=self.cfg.batch_size,
            sampler=keys,
            num_workers=self.cfg.num_workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )

    def fit(self, resume: bool = False) -> dict:
        cfg = self.cfg
        self.load(resume)
        self.last_checkpoint_time = time.monotonic()
        with self.signal_handlers():
            while self.epoch < cfg.epochs:
                self.run_epoch()
        return self.summary()

    def run_epoch(self) -> None:
        cfg, model = self.cfg, self.model
        model.train()
        batches_per_epoch = self.steps_per_epoch * cfg.accum_iter
        progress = self.progress_bar()
        group = self.optimizer.param_groups[0]
        lr = group["lr"] / group.get("lr_scale", 1.0)  # as the last step set it (restored on resume)
        step_start = time.perf_counter()
        for batch in self.loader(self.epoch):
            if self.batches_done % cfg.accum_iter == 0:
                lr = learning_rate(self.epoch + self.batches_done / batches_per_epoch, cfg)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
            boundary = (self.batches_done + 1) % cfg.accum_iter == 0
            batch = [item.to(self.device, non_blocking=True) for item in batch]
            sync = nullcontext() if boundary or not self.distributed else model.no_sync()
            with sync:
                with self.autocast():
                    loss, metrics = self.step_fn(model, batch)
                due = cfg.checkpoint_minutes > 0 and time.monotonic() - self.last_checkpoint_time >= cfg.checkpoint_minutes * 60
                flags = [
                    float(self.pending_signal is not None or (due and self.rank == 0)),
                    float(self.pending_signal in _stop_signals),
                    float(self.pending_signal == signal.SIGTERM),
                ]
                values = self.reduce([loss, *metrics.values()], flags)
                if not all(math.isfinite(v) for v in values[: -len(flags)]):
                    raise NonFiniteLossError(
                        f"non-finite loss at epoch {self.epoch}, step {self.optimizer_steps}: "
                        f"{dict(zip(['loss', *metrics], values))}. The last good checkpoint ({self.checkpoint_path}) is kept; "
                        "lower the learning rate, set --clip-grad, or use bf16 instead of fp16, then rerun with --resume"
                    )
                self.scaler.scale(loss / cfg.accum_iter).backward()
            self.batches_done += 1
            for name, value in zip(["loss", *metrics], values):
                self.epoch_sums[name] = self.epoch_sums.get(name, 0.0) + value
            self.epoch_count += 1
            if not boundary:
                continue
            if cfg.clip_grad:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.optimizer_steps += 1
            elapsed = time.perf_counter() - step_start
            self.step_times.append(elapsed)
            self.train_seconds += elapsed
            step_start = time.perf_counter()
            record = dict(zip(["loss", *metrics], values))
            if self.optimizer_steps % cfg.log_every == 0:
                self.write_metrics({"kind": "step", "epoch": self.epoch, "step": self.optimizer_steps, "lr": lr, **record})
            progress(record, lr)
            checkpoint_now, stop_now, sigterm_seen = (flag > 0 for flag in values[-3:])
            if checkpoint_now:
                received = self.pending_signal
                reason = signal.Signals(received).name if received else "timer"
                self.pending_signal = None
                self.save_checkpoint()
                self.log(f"checkpoint written ({reason}) at epoch {self.epoch}, step {self.optimizer_steps}")
                if stop_now:
                    stopped_by = signal.SIGTERM if sigterm_seen else received if received in _stop_signals else min(_stop_signals - {signal.SIGTERM})
                    raise TrainingInterrupted(
                        f"stopped by {signal.Signals(stopped_by).name} at epoch {self.epoch}, step {self.optimizer_steps}; "
                        f"checkpoint saved in {self.checkpoint_path}: rerun the same command with --resume to continue",
                        stopped_by,
                    )
        means = {name: total / self.epoch_count for name, total in self.epoch_sums.items()}
        if self.epoch_end is not None:
            means.update(self.epoch_end())
        self.write_metrics({"kind": "epoch", "epoch": self.epoch, "step": self.optimizer_steps, "lr": lr, **means})
        self.log(f"epoch {self.epoch + 1}/{cfg.epochs} " + " ".join(f"{k}={v:.4g}" for k, v in means.items()))
        self.last_epoch_means = means
        self.epoch += 1
        self.batches_done, self.epoch_sums, self.epoch_count = 0, {}, 0
        self.save_checkpoint()

    def progress_bar(self):
        """A tqdm bar on a terminal; plain periodic lines otherwise (cluster logs)."""
        steps = self.steps_per_epoch
        if self.rank == 0 and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=self.batches_done // self.cfg.accum_iter, desc=f"epoch {self.epoch + 1}", leave=False)

            def update(record, lr):
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
                if bar.n >= steps:
                    bar.close()

            return update

        def report(record, lr):
            if self.optimizer_steps % self.cfg.log_every == 0:
                self.log(f"epoch {self.epoch + 1} step {self.optimizer_steps} lr {lr:.3e} " + " ".join(f"{k}={v:.4g}" for k, v in record.items()))

        return report

    def summary(self) -> dict:
        if not hasattr(self, "last_epoch_means"):
            lines = [json.loads(line) for line in self.metrics_path.read_text().splitlines()] if self.metrics_path.exists() else []
            epochs = [line for line in lines if line["kind"] == "epoch"]
            self.last_epoch_means = {k: v for k, v in epochs[-1].items() if k not in ("kind", "epoch", "step", "lr")} if epochs else {}
        median = statistics.median(self.step_times) if self.step_times else None
        effective_batch = self.cfg.batch_size * self.cfg.accum_iter * self.world_size
        return {
            "final": self.last_epoch_means,
            "epochs": self.epoch,
            "optimizer_steps": self.optimizer_steps,
            "images_seen": self.optimizer_steps * effective_batch,
            "effective_batch": effective_batch,
            "world_size": self.world_size,
            "train_seconds": self.train_seconds,
            "step_time_median_s": median,
            "images_per_second": effective_batch / median if median else None,
        }
