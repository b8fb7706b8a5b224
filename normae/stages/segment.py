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
from pathlib import Path

import torch

from normae.core.seg_eval import evaluate_segmentation
from normae.core.seg_metrics import ConfusionMatrix
from normae.core.segmenter import ViTUperNet, load_pretrained, param_groups, segmentation_loss
from normae.data.registry import DATASETS, IGNORE_INDEX, SEGMENTATION_SETS
from normae.data.segmentation import build_segmentation_dataset
from normae.spec import SegmentSpec
from normae.stages.common import Run, fixed_subset, run_stage
from normae.stages.transfer import EvaluationStage
from normae.training.loop import Trainer
from normae.training.optim import adamw
from normae.training.runtime import amp_dtype, seeded_randomness
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


class Segmentation(EvaluationStage):
    """UperNet on the encoder, evaluated every ``eval_every`` epochs and after the last."""

    spec: SegmentSpec

    def build(self, run: Run):
        spec, crop = self.spec, self.img_size
        self.info = DATASETS[spec.dataset]
        self.stride = min(SEGMENTATION_SETS[spec.dataset].slide_stride, crop)  # a smaller crop than the set's: no gaps
        self.train_set, self.eval_set = (
            fixed_subset(build_segmentation_dataset(spec.dataset, spec.data_root, split, crop, spec.download), n)
            for split, n in (("train", spec.train_samples), ("eval", spec.eval_samples))
        )
        model = ViTUperNet(
            self.size,
            crop,
            self.patch_size,
            self.info.num_classes,
            drop_path=spec.drop_path,
            decoder_channels=spec.decoder_channels,
        )
        if self.state is not None:
            load_pretrained(model, self.state, spec.init)
        if run.device.type == "cuda" and run.world_size > 1:  # the pyramid's and heads' BatchNorm see the whole batch
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(run.device)
        self.latest: dict = {}  # the last evaluation, per-class IoU included
        return self.model, self.train_set

    def loop(self, cfg):
        return dataclasses.replace(cfg, decay="poly", poly_power=self.spec.poly_power)

    def optimizer(self, model, cfg, device):
        return adamw(param_groups(model, self.spec.weight_decay, self.spec.layer_decay), cfg.lr, (0.9, 0.999), device)

    def step(self, model, cfg):
        return segmentation_step(self.spec.aux_weight)

    def evaluate_now(self, run: Run) -> dict:
        return evaluate_segmentation(
            self.model,
            self.eval_set,
            run.device,
            self.info.num_classes,
            ignore_index=IGNORE_INDEX,
            crop=self.img_size,
            stride=self.stride,
            amp_dtype=amp_dtype(run.amp),
            num_workers=self.spec.num_workers,
            worker_init_fn=self.trainer.signals.worker_init(),
        )

    def trainer_options(self, run: Run):
        def evaluate_epoch() -> dict:
            epoch = self.trainer.state.epoch + 1
            if epoch % self.spec.eval_every and epoch != self.spec.epochs:
                return {}
            self.latest = self.evaluate_now(run)
            return {key: self.latest[key] for key in EVAL_KEYS}

        return Trainer, {"epoch_end": evaluate_epoch}

    def results(self, run: Run, fitted: dict) -> dict:
        if not self.latest:  # resumed after the last epoch's evaluation: its per-class IoU is not in the checkpoint
            self.latest = self.evaluate_now(run)
        evaluated = [record for record in fitted["history"] if "miou" in record]
        best = max(evaluated, key=lambda record: record["miou"]) if evaluated else {}
        num_classes = self.info.num_classes
        return {
            **fitted,
            **{key: self.latest[key] for key in EVAL_KEYS},
            "per_class_iou": self.latest["per_class_iou"],
            "best_miou": best.get("miou"),
            "best_epoch": best.get("epoch"),
            "last_epoch": fitted["epochs"],
            "trivial": trivial_floor(self.train_set, self.eval_set, num_classes) if run.rank == 0 else None,
            **self.facts(run, self.info, self.train_set, self.eval_set),
            "crop": self.img_size,
            "slide_stride": self.stride,
        }


def run_segment(
    spec: SegmentSpec, run_dir: str | Path, resume: bool = False, signals: StopSignals | None = None
) -> dict:
    """Train UperNet on the encoder ``spec.init`` names and evaluate it, into ``run_dir``."""
    return run_stage(Segmentation(spec), run_dir, resume, signals)
