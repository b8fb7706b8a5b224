"""Semantic segmentation stage: a pre-trained (or fresh) encoder under UperNet -> mIoU, pixel accuracy,
per-class IoU on the set's validation split (MAE's ADE20K protocol; the CPU stand-in at small scales).

It runs on the same training loop as pre-training and fine-tuning, so checkpoints, exact resume, DDP,
AMP and ``summary.json`` work the same way; the upstream checkpoint's digest is remembered as
fine-tuning remembers it (``normae.stages.transfer``). The summary also holds the floor a trained
encoder must clear: the mIoU of predicting the training set's most frequent class everywhere, and of
predicting at each pixel position its most frequent training class.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from normae.core.seg_eval import evaluate_segmentation
from normae.core.seg_metrics import ConfusionMatrix
from normae.core.segmenter import ViTUperNet, load_pretrained, param_groups, segmentation_loss
from normae.data.registry import DATASETS, IGNORE_INDEX, SEGMENTATION_SETS
from normae.data.segmentation import build_segmentation_dataset
from normae.spec import SegmentSpec
from normae.stages.common import (
    evaluation_facts,
    finish_run_folder,
    fixed_subset,
    loop_config,
    open_run_folder,
    spec_withdrawn_on_early_failure,
    start_run_folder,
)
from normae.stages.transfer import encoder_source, upstream_digest
from normae.training.loop import Trainer
from normae.training.optim import adamw
from normae.training.runtime import (
    amp_dtype,
    environment_facts,
    resolve_amp,
    seed_everything,
    seeded_randomness,
    setup_distributed,
    wrap_ddp,
)
from normae.training.sampling import sample_seed
from normae.training.signals import StopSignals

EVAL_KEYS = ("miou", "pixel_accuracy", "mean_accuracy")  # the scalars an evaluation adds to its epoch's line
FLOOR_TRAIN_IMAGES = 2000  # training masks the trivial predictors count classes on (a fixed subset)


def segmentation_step(aux_weight: float):
    def step(model, batch):
        images, masks = batch
        return segmentation_loss(model(images), masks, ignore_index=IGNORE_INDEX, aux_weight=aux_weight)

    return step


def trivial_floor(train_set, eval_set, num_classes: int) -> dict:
    """mIoU of two predictors that never look at the image: the training set's most frequent class
    everywhere, and each pixel position's most frequent training class (where all masks share a size).

    Counted on up to FLOOR_TRAIN_IMAGES training masks, each drawn with its epoch-0 randomness.
    """
    counts = torch.zeros(num_classes, dtype=torch.int64)
    by_position = None
    for index in range(min(len(train_set), FLOOR_TRAIN_IMAGES)):
        with seeded_randomness(sample_seed(0, 0, index)):
            _, mask = train_set[index]
        valid = mask[mask != IGNORE_INDEX]
        counts += torch.bincount(valid.flatten(), minlength=num_classes)
        one_hot = torch.nn.functional.one_hot(mask.clamp(max=num_classes), num_classes + 1)[..., :num_classes]
        if by_position is None or by_position.shape[:2] == one_hot.shape[:2]:
            by_position = one_hot.long() if by_position is None else by_position + one_hot
    majority_class = int(counts.argmax())
    majority, per_position = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
    position_class = by_position.argmax(-1) if by_position is not None else None
    for index in range(len(eval_set)):
        _, mask = eval_set[index]
        majority.update(torch.full_like(mask, majority_class), mask)
        if position_class is not None and position_class.shape == mask.shape:
            per_position.update(position_class, mask)
    floor = {"majority_class": majority.compute()["miou"], "majority_class_index": majority_class}
    by_position_result = per_position.compute()
    if by_position_result["pixels"]:
        floor["majority_per_position"] = by_position_result["miou"]
    return floor


def run_segment(
    spec: SegmentSpec, run_dir: str | Path, resume: bool = False, signals: StopSignals | None = None
) -> dict:
    """Train UperNet on the encoder ``spec.init`` names and evaluate it, into ``run_dir``."""
    folder, done = open_run_folder(spec, run_dir)
    if done is not None:
        return done
    info = DATASETS[spec.dataset]
    upstream = upstream_digest(spec)  # hashed before it is loaded, as fine-tuning does
    state, size, patch_size, _ = encoder_source(spec)
    crop = spec.img_size or info.img_size
    stride = min(SEGMENTATION_SETS[spec.dataset].slide_stride, crop)  # a smaller crop than the set's: no gaps
    rank, world_size, device = setup_distributed()
    with start_run_folder(folder, spec, rank, device) as finished, spec_withdrawn_on_early_failure(folder, rank):
        if finished is not None:
            return finished
        seed_everything(spec.seed)
        train_set = fixed_subset(
            build_segmentation_dataset(spec.dataset, spec.data_root, "train", crop, spec.download), spec.train_samples
        )
        eval_set = fixed_subset(
            build_segmentation_dataset(spec.dataset, spec.data_root, "eval", crop, spec.download), spec.eval_samples
        )
        model = ViTUperNet(
            size, crop, patch_size, info.num_classes, drop_path=spec.drop_path, decoder_channels=spec.decoder_channels
        )
        if state is not None:
            load_pretrained(model, state, spec.init)
        if device.type == "cuda" and world_size > 1:  # the pyramid's and heads' BatchNorm see the whole batch
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(device)
        amp = resolve_amp(spec.amp, device)
        cfg, batch_plan = loop_config(spec, world_size, amp, len(train_set))
        cfg = dataclasses.replace(cfg, decay="poly", poly_power=spec.poly_power)
        optimizer = adamw(param_groups(model, spec.weight_decay, spec.layer_decay), cfg.lr, (0.9, 0.999), device)
        wrapped = wrap_ddp(model, device, world_size)
        latest: dict = {}

        def evaluate_now() -> dict:
            return evaluate_segmentation(
                model,
                eval_set,
                device,
                info.num_classes,
                ignore_index=IGNORE_INDEX,
                crop=crop,
                stride=stride,
                amp_dtype=amp_dtype(amp),
                num_workers=spec.num_workers,
                worker_init_fn=trainer.signals.worker_init(),
            )

        def evaluate_epoch() -> dict:
            epoch = trainer.state.epoch + 1
            if epoch % spec.eval_every and epoch != spec.epochs:
                return {}
            latest.clear()
            latest.update(evaluate_now())
            return {key: latest[key] for key in EVAL_KEYS}

        trainer = Trainer(
            wrapped,
            train_set,
            cfg,
            folder.path,
            segmentation_step(spec.aux_weight),
            optimizer,
            device,
            spec=spec.to_dict(),
            epoch_end=evaluate_epoch,
            signals=signals,
            upstream=upstream,
        )
        started = time.time()
        results = trainer.fit(resume=resume)
        if not latest:  # resumed after the last epoch's evaluation: its per-class IoU is not in the checkpoint
            latest.update(evaluate_now())
        evaluated = [record for record in results["history"] if "miou" in record]
        best = max(evaluated, key=lambda record: record["miou"]) if evaluated else {}
        return finish_run_folder(
            folder,
            rank,
            spec,
            {
                **results,
                **{key: latest[key] for key in EVAL_KEYS},
                "per_class_iou": latest["per_class_iou"],
                "best_miou": best.get("miou"),
                "best_epoch": best.get("epoch"),
                "last_epoch": results["epochs"],
                "trivial": trivial_floor(train_set, eval_set, info.num_classes) if rank == 0 else None,
                **evaluation_facts(spec, upstream, (size, patch_size, crop), info, train_set, eval_set),
                "crop": crop,
                "slide_stride": stride,
                "lr": cfg.lr,
                "batch": batch_plan.facts(),
                "amp": amp,
                **environment_facts(device),
                "wall_seconds_this_session": time.time() - started,
            },
        )
