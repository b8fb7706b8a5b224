"""What every stage does to its run folder, and the settings every stage's spec shares.

The order matters: the folder's spec is checked before anything else, so a folder holding another
run is refused even when that run has finished; only then does a finished run return its summary.

One process trains in a folder at a time: rank 0 holds the folder's lock (``RunFolder.training_lock``)
from before it writes spec.json until after summary.json. Under DDP (torchrun, or the tasks of a
SLURM job) the ranks share the folder legitimately, so only rank 0 locks it and the other ranks
follow rank 0's outcome through one broadcast: a folder busy with another run stops every rank
at once, none waits in a collective for a rank that has left. A launcher waiting on a job holds no
lock of its own; the job's rank 0 does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import Subset

from normae.errors import RunFolderError
from normae.paths import RunFolder
from normae.spec.batching import BatchPlan, plan_batch
from normae.training.loop import LoopConfig

# What rank 0 found when it took the folder, as broadcast to the other ranks.
TRAIN, FINISHED, REFUSED = 0, 1, 2


def open_run_folder(spec, run_dir: str | Path) -> tuple[RunFolder, dict | None]:
    """(the run folder, its summary if the run has finished); a folder holding another spec is an error."""
    folder = RunFolder(run_dir)
    folder.check_spec(spec)
    summary = folder.finished_summary()
    if summary is not None:
        print(f"[normae] {folder.path} is already finished ({folder.summary_path}); nothing to do", file=sys.stderr)
    return folder, summary


def rank_zero_says(outcome: int, device: torch.device) -> int:
    """Rank 0's ``outcome``, on every rank (one broadcast under DDP; as it is without)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return outcome
    flag = torch.tensor([outcome], dtype=torch.int64, device=device)
    dist.broadcast(flag, src=0)
    return int(flag.item())


@contextmanager
def start_run_folder(folder: RunFolder, spec, rank: int, device: torch.device) -> Iterator[dict | None]:
    """Take the folder for this run, for as long as the ``with`` block trains in it.

    Rank 0 creates the folder, locks it (a folder another process trains in is a ``RunFolderError``),
    checks again under the lock that it holds this spec and has not finished meanwhile, sets aside a
    corrupt summary.json (``summary.json.corrupt``), and writes spec.json, first. Every rank gets
    the summary if the run has finished meanwhile (nothing to train), else None.
    """
    with ExitStack() as held:
        outcome, error = TRAIN, None
        if rank == 0:
            try:
                held.enter_context(folder.training_lock())
                folder.check_spec(spec)
                outcome = FINISHED if folder.finished_summary(set_aside=True) is not None else TRAIN
                if outcome == TRAIN:
                    folder.write_spec(spec)
            except Exception as failure:  # every rank must hear of it, then rank 0 raises it
                outcome, error = REFUSED, failure
        outcome = rank_zero_says(outcome, device)
        if error is not None:
            raise error
        if outcome == REFUSED:
            raise RunFolderError(f"{folder.path}: rank 0 could not take the run folder (its log says why)")
        if outcome == FINISHED:
            print(f"[normae] {folder.path} finished meanwhile ({folder.summary_path}); nothing to do", file=sys.stderr)
            yield folder.require_summary()
        else:
            yield None


@contextmanager
def spec_withdrawn_on_early_failure(folder: RunFolder, rank: int) -> Iterator[None]:
    """If the block fails before training has started, rank 0 takes spec.json back out of the folder.

    The rule: a folder belongs to its spec once training has started in it (metrics.jsonl or
    checkpoint.pt exists). A check that can only run after spec.json is written (data not found, an
    unknown model, a checkpoint that does not fit) fails before that, and the spec.json it leaves
    would refuse the corrected spec ("holds another run"): it is removed, so a corrected try may use
    the same ``--out``. Used inside ``start_run_folder``'s block, under the folder's lock.
    """
    try:
        yield
    except BaseException:
        if rank == 0 and not folder.checkpoint_path.exists() and not folder.metrics_path.exists():
            folder.spec_path.unlink(missing_ok=True)
        raise


def finish_run_folder(folder: RunFolder, rank: int, spec, results: dict) -> dict:
    """Rank 0 writes summary.json (the run id, stage and spec, then ``results``), last and atomically;
    every rank returns the summary."""
    summary = {"run_id": spec.run_id(), "stage": spec.stage, "spec": spec.to_dict(), **results}
    if rank == 0:
        folder.write_summary(summary)
    return summary


def fixed_subset(dataset, size: int | None):
    """The same ``size`` images for every run (seed 0, whatever the run's seed), or all of them."""
    if size is None or size >= len(dataset):
        return dataset
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:size]
    return Subset(dataset, sorted(chosen.tolist()))


def loop_config(spec, world_size: int, amp: str, dataset_len: int) -> tuple[LoopConfig, BatchPlan]:
    """The loop settings every stage's spec carries, with the step's split over processes
    (``normae.spec.batching``); lr = blr x global batch / 256 unless given."""
    batch = plan_batch(spec.global_batch, spec.batch_size, spec.accum_iter, world_size, dataset_len)
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
