"""The one skeleton every stage runs in (``run_stage``), and the settings every stage's spec shares.

A stage (``Stage``) builds only what is its own: its model, data, step, optimiser groups, evaluation
and the facts its summary adds. ``run_stage`` owns the rest, in this order: join the processes
(DDP), take the run folder and decide what to do in it (``take_run_folder``), seed, build, train
(``train``, or the stage's own one pass), finish.

``take_run_folder`` is the one place where "this run is finished / resume it / start it afresh" is
decided, by rank 0 under the folder's lock: the folder's spec is checked first (a folder holding
another run is refused even when that run has finished; the one ``check_spec`` of the process),
then the run's inputs (``Stage.inputs``, ``normae.stages.inputs``: its spec's digest, its upstream and
teacher checkpoints' SHA-256 and its data folder's fingerprint) are compared with those its summary
and its checkpoint recorded: a finished run made from these inputs returns its summary (one made
from others is stale: set aside, the run goes again), a checkpoint made from others starts the run
afresh, one made from these resumes (with ``--resume``).

One process trains in a folder at a time: rank 0 holds the folder's lock (``RunFolder.training_lock``)
from before it writes spec.json until after summary.json. Under DDP (torchrun, or the tasks of a
SLURM job) the ranks share the folder legitimately, so only rank 0 locks it and the other ranks
follow rank 0's decision through one broadcast: a folder busy with another run stops every rank
at once, none waits in a collective for a rank that has left. A launcher waiting on a job holds no
lock of its own; the job's rank 0 does.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Subset

from normae.errors import ConfigError, RunFolderError
from normae.paths import RunFolder
from normae.spec.batching import BatchPlan, pass_size_problem, plan_batch
from normae.stages.inputs import input_changes, run_inputs, stale_summary
from normae.training.checkpoint import KEEP_RESUME_STATE, disk_full_is_an_error, drop_resume_state, load_checkpoint
from normae.training.loop import LoopConfig, Trainer
from normae.training.runtime import environment_facts, resolve_amp, seed_everything, setup_distributed, wrap_ddp
from normae.training.signals import StopSignals

# What rank 0 decided when it took the folder, as broadcast to the other ranks.
FRESH, RESUME, FINISHED, REFUSED = 0, 1, 2, 3


@dataclass(frozen=True)
class Run:
    """One process's run of a stage, as ``take_run_folder`` decided it."""

    folder: RunFolder
    rank: int
    world_size: int
    device: torch.device
    amp: str  # resolved: bf16, fp16 or none
    resume: bool  # continue from checkpoint.pt (else the run starts afresh)
    inputs: dict[str, str | None]  # Stage.inputs(), recorded in the checkpoint and the summary
    signals: StopSignals | None


class Stage:
    """What a stage builds; ``run_stage`` does the rest: ``prepare``, then (seeded) ``run``, which trains
    by default (``train``); a one-pass stage (k-NN, bench) overrides it. The training hooks are called
    in this order: ``build``, ``loop``, ``optimizer``, ``step``, ``trainer_options``, then ``results``."""

    compile = False  # torch.compile the model, after DDP

    def __init__(self, spec):
        self.spec = spec
        self.trainer: Trainer | None = None  # set by ``train`` once it exists (evaluations read its state)

    def inputs(self) -> dict[str, str | None]:
        """What the run is made from (``normae.stages.inputs.run_inputs``: its spec, upstream, teacher and
        data, a digest each; None: nothing). Recorded in the checkpoint and the summary; a checkpoint or a
        summary that recorded other values is stale (``decide``)."""
        return run_inputs(self.spec)

    def prepare(self, run: Run) -> None:
        """What is read and checked before the run is seeded (a teacher, an upstream encoder)."""

    def run(self, run: Run) -> dict:
        """The stage's results for its summary (rank 0 writes it)."""
        return train(self, run)

    # ---- the training stages' hooks -------------------------------------------------------------
    def build(self, run: Run) -> tuple[torch.nn.Module, Any]:
        """(the plain model on ``run.device``, the training set)."""
        raise NotImplementedError

    def loop(self, cfg: LoopConfig) -> LoopConfig:
        """The stage's changes to the loop settings every spec carries."""
        return cfg

    def optimizer(self, model: torch.nn.Module, cfg: LoopConfig, device: torch.device):
        raise NotImplementedError

    def step(self, model: torch.nn.Module, cfg: LoopConfig) -> Callable:
        """``step(model, batch) -> (loss, {name: scalar})``."""
        raise NotImplementedError

    def trainer_options(self, run: Run) -> tuple[type[Trainer], dict]:
        """(the Trainer class, its keyword options beyond the common ones)."""
        return Trainer, {}

    def results(self, run: Run, fitted: dict) -> dict:
        """The summary's entries from the loop's ``fitted`` results."""
        return fitted


def run_stage(stage: Stage, run_dir: str | Path, resume: bool = False, signals: StopSignals | None = None) -> dict:
    """Run ``stage`` into ``run_dir``; returns the summary (rank 0 also writes summary.json).

    ``resume``: continue from the folder's checkpoint if there is one (without it, a checkpoint is an
    error); ``signals``: which signals checkpoint and which stop the run (default ``StopSignals()``).
    """
    with take_run_folder(stage, RunFolder(run_dir), resume, signals) as taken:
        if not isinstance(taken, Run):
            return taken  # the finished run's summary
        started = time.time()
        stage.prepare(taken)
        seed_everything(stage.spec.seed)
        results = stage.run(taken)
        results.update(environment_facts(taken.device), wall_seconds_this_session=time.time() - started)
        return finish_run_folder(taken.folder, taken.rank, stage.spec, taken.inputs, results)


@contextmanager
def take_run_folder(stage: Stage, folder: RunFolder, resume: bool, signals: StopSignals | None) -> Iterator[Run | dict]:
    """Take the folder for this run, for as long as the ``with`` block runs in it: yields the summary
    of a finished run (nothing to do) or the ``Run`` to carry out.

    Rank 0 locks the folder (another process training in it is a ``RunFolderError``) and decides
    (``decide``); every rank follows its decision. A failure before training has started leaves
    nothing that blocks a corrected try (``withdrawn_on_early_failure``).
    """
    rank, world_size, device = setup_distributed()
    created = not folder.path.exists()
    with ExitStack() as held:
        outcome, error, inputs, locked = FRESH, None, {}, False
        if rank == 0:
            try:
                held.enter_context(folder.training_lock())
                locked = True
                outcome, inputs = decide(folder, stage, resume)
            except Exception as failure:  # every rank must hear of it, then rank 0 raises it
                outcome, error = REFUSED, failure
        outcome = rank_zero_says(outcome, device)
        if error is not None:
            if locked and created:  # refused before spec.json: the folder this process made goes again
                shutil.rmtree(folder.path, ignore_errors=True)
            raise error
        if outcome == REFUSED:
            raise RunFolderError(f"{folder.path}: rank 0 could not take the run folder (its log says why)")
        if outcome == FINISHED:
            yield folder.require_summary()
            return
        if rank == 0:
            held.enter_context(withdrawn_on_early_failure(folder, created))
        inputs = rank_zero_inputs(inputs, device)
        amp = resolve_amp(stage.spec.amp, device)
        yield Run(folder, rank, world_size, device, amp, outcome == RESUME, inputs, signals)


def decide(folder: RunFolder, stage: Stage, resume: bool) -> tuple[int, dict[str, str | None]]:
    """The one decision, by rank 0 under the folder's lock: (FINISHED, RESUME or FRESH, the run's inputs).

    The spec first (another run's folder is refused), then the run's inputs (``stage.inputs()``: an
    upstream is hashed before it is loaded, never a stale resume), then a finished run (its
    summary.json; a corrupt one is set aside, and so is a stale one, whose recorded inputs differ from
    these: the run goes on), then the checkpoint: none, or one whose recorded inputs differ (deleted,
    with metrics.jsonl), starts afresh; another is resumed with ``resume`` and an error without.
    spec.json is written last. An input a summary or checkpoint did not record (one from before it was
    fingerprinted) counts as unchanged (``normae.stages.inputs.input_changes``).
    """
    spec = stage.spec
    folder.check_spec(spec)
    inputs = stage.inputs()
    summary = folder.finished_summary(set_aside=True)
    if summary is not None and not stale_summary(folder, summary, inputs):
        print(f"[normae] {folder.path} is already finished ({folder.summary_path}); nothing to do", file=sys.stderr)
        return FINISHED, {}
    outcome = FRESH
    if folder.checkpoint_path.exists():
        if not resume:
            raise RunFolderError(
                f"{folder.checkpoint_path} exists: pass --resume to continue that run, "
                "or delete the run folder to start over"
            )
        changed = changed_inputs(folder.checkpoint_path, inputs)
        if changed:
            print(
                f"[normae] {folder.checkpoint_path} {changed}: starting afresh "
                "(the stale checkpoint and metrics are deleted)",
                file=sys.stderr,
                flush=True,
            )
            folder.checkpoint_path.unlink()
            folder.metrics_path.unlink(missing_ok=True)
        else:
            outcome = RESUME
    folder.write_spec(spec)
    return outcome, inputs


def changed_inputs(checkpoint: Path, inputs: dict[str, str | None]) -> str:
    """What changed between the inputs ``checkpoint`` recorded and this run's ('' if nothing). Its record is
    ``inputs``; a checkpoint from before that recorded only its ``upstream``, beside the weights."""
    if all(value is None for value in inputs.values()):
        return ""  # nothing to compare: the checkpoint need not be read twice
    saved = load_checkpoint(checkpoint, mmap=True)
    recorded = saved.get("inputs")
    if not isinstance(recorded, dict):
        recorded = {"upstream": saved["upstream"]} if "upstream" in saved else {}
    return input_changes(recorded, inputs)


def rank_zero_says(outcome: int, device: torch.device) -> int:
    """Rank 0's ``outcome``, on every rank (one broadcast under DDP; as it is without)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return outcome
    flag = torch.tensor([outcome], dtype=torch.int64, device=device)
    dist.broadcast(flag, src=0)
    return int(flag.item())


def rank_zero_inputs(inputs: dict[str, str | None], device: torch.device) -> dict[str, str | None]:
    """Rank 0's inputs, on every rank (one broadcast under DDP): the data folder is scanned and the
    upstream files hashed once per run, not once per process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return inputs
    shared = [inputs]
    dist.broadcast_object_list(shared, src=0, device=device)
    return shared[0]


@contextmanager
def withdrawn_on_early_failure(folder: RunFolder, created: bool) -> Iterator[None]:
    """If the block fails before training has started, rank 0 leaves nothing that blocks a corrected try.

    The rule: a folder belongs to its spec once training has started in it (metrics.jsonl or
    checkpoint.pt exists). A check that can only run once the folder is taken (data not found, an
    unknown model, a teacher or a checkpoint that does not fit) fails before that: the folder goes
    if this process created it, else its spec.json (this run's) is taken back out, so that a
    corrected spec may use the same ``--out``. Used under the folder's lock.
    """
    try:
        yield
    except BaseException:
        if not folder.checkpoint_path.exists() and not folder.metrics_path.exists():
            if created:
                shutil.rmtree(folder.path, ignore_errors=True)
            else:
                folder.spec_path.unlink(missing_ok=True)
        raise


def finish_run_folder(folder: RunFolder, rank: int, spec, inputs: dict, results: dict) -> dict:
    """Rank 0 drops what only a resume reads from the final checkpoint (``drop_resume_state``: before the
    summary, so nothing downstream hashes the file while it changes), then writes summary.json (the run id,
    stage, spec and inputs, then ``results``), last and atomically; every rank returns the summary."""
    summary = {"run_id": spec.run_id(), "stage": spec.stage, "spec": spec.to_dict(), "inputs": inputs, **results}
    if rank == 0:
        with disk_full_is_an_error(folder.checkpoint_path, folder.checkpoint_path, "the end of the run"):
            dropped = drop_resume_state(folder.checkpoint_path)
        if dropped:
            print(
                f"[normae] {folder.checkpoint_path}: the optimiser state is dropped, the final weights kept "
                f"({dropped[0] / 2**20:.1f} -> {dropped[1] / 2**20:.1f} MiB; {KEEP_RESUME_STATE}=1 keeps it)",
                file=sys.stderr,
            )
        folder.write_summary(summary)
    return summary


def train(stage: Stage, run: Run) -> dict:
    """The training stages' run: the stage's model and data, the loop settings, optimiser, DDP and Trainer."""
    model, train_set = stage.build(run)
    cfg, batch_plan = loop_config(stage.spec, run.world_size, run.amp, len(train_set))
    cfg = stage.loop(cfg)
    optimizer = stage.optimizer(model, cfg, run.device)
    wrapped = wrap_ddp(model, run.device, run.world_size)
    if stage.compile:  # after DDP, as torch advises; checkpoints hold the plain module's weights (loop.unwrap)
        wrapped = torch.compile(wrapped)
    step = stage.step(model, cfg)
    trainer_class, options = stage.trainer_options(run)
    stage.trainer = trainer_class(
        wrapped,
        train_set,
        cfg,
        run.folder.path,
        step,
        optimizer,
        run.device,
        spec=stage.spec.to_dict(),
        signals=run.signals,
        inputs=run.inputs,
        **options,
    )
    fitted = stage.trainer.fit(resume=run.resume)
    return {**stage.results(run, fitted), "lr": cfg.lr, "batch": batch_plan.facts(), "amp": run.amp}


def fixed_subset(dataset, size: int | None):
    """The same ``size`` images for every run (seed 0, whatever the run's seed), or all of them."""
    if size is None or size >= len(dataset):
        return dataset
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:size]
    return Subset(dataset, sorted(chosen.tolist()))


def loop_config(spec, world_size: int, amp: str, dataset_len: int) -> tuple[LoopConfig, BatchPlan]:
    """The loop settings every stage's spec carries, with the step's split over processes
    (``normae.spec.batching``); lr = blr x global batch / 256 unless given. A forward pass below the
    spec's ``pass_minimum()`` (the set capped it, or the world size split it) is refused before any step."""
    batch = plan_batch(spec.global_batch, spec.batch_size, spec.accum_iter, world_size, dataset_len)
    problem = pass_size_problem(batch, *spec.pass_minimum())
    if problem:
        raise ConfigError(problem)
    cfg = LoopConfig(
        epochs=spec.epochs,
        batch_size=batch.micro_batch,
        lr=spec.lr if spec.lr is not None else spec.blr * batch.global_batch / 256,
        accum_iter=batch.accum_iter,
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
    return cfg, batch


def evaluation_facts(
    spec, upstream: str | None, shape: tuple[str, int, int], info, train_set, eval_set, train_labels=None
) -> dict:
    """What an evaluation's summary records about its encoder and data, whatever the protocol.

    ``shape``: (model size, patch size, image size) that ran; ``info``: the set's registry facts;
    ``train_labels``: a classification set's training labels (None for segmentation: pixels have classes).
    """
    model, patch_size, img_size = shape
    classes = {} if train_labels is None else {"train_classes_present": len(set(train_labels))}
    return {
        **classes,
        "init": spec.init,
        "init_digest": upstream,
        "model": model,
        "patch_size": patch_size,
        "image_size": img_size,
        "train_split": info.train_split_name,
        "eval_split": info.eval_split_name,
        "train_images": len(train_set),
        "eval_images": len(eval_set),
        "stand_in_for": info.stand_in_for,
    }
