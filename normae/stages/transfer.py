"""Fine-tuning and linear-probing stages: a pre-trained (or fresh) encoder -> top-1 / top-5 accuracy.

Both run on the same training loop as pre-training, so checkpoints, exact resume, DDP, AMP and
``summary.json`` work the same way. The model is evaluated on the set's official evaluation
split after every epoch; the summary reports the last and the best epoch.

An evaluation remembers which upstream it started from: the SHA-256 of the checkpoint file
``init`` names (the run's ``upstream`` input, ``normae.stages.inputs``), in its checkpoint and its
summary (``inputs``, and ``init_digest``). The file's digest, rather than the pre-training
summary's: it is exactly what the encoder was loaded from, it works for public checkpoint files
that have no summary, and a summary rewritten for the same weights changes nothing. A resume whose
upstream file has changed since (its pre-training run was trained again under the same id) starts
the evaluation afresh, with one line saying why; a finished evaluation whose upstream changed runs
again.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from timm.data import Mixup, create_transform
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import Lars, param_groups_layer_decay
from torchvision import transforms

from normae.core.classifier import build_classifier, evaluate, load_encoder, make_linear_probe, read_checkpoint
from normae.data.classification import build_classification_dataset, targets_of
from normae.data.registry import CLASSIFICATION_SETS
from normae.data.transforms import eval_transform
from normae.spec import DownstreamSpec, FinetuneSpec, KnnSpec, LinprobeSpec
from normae.stages.common import Run, Stage, evaluation_facts, fixed_subset, run_stage
from normae.training.loop import Trainer
from normae.training.optim import adamw
from normae.training.runtime import amp_dtype
from normae.training.signals import StopSignals


def encoder_source(spec: DownstreamSpec | KnnSpec) -> tuple[dict | None, str, int, int | None]:
    """(pre-trained state dict or None, model size, patch size, pre-training image size) for ``spec.init``.

    Our own checkpoints carry their spec, which decides the model and patch size; for foreign
    ones (public MAE / NoR-MAE files) ``spec.model`` and ``spec.patch_size`` are used.
    """
    if spec.init == "none":
        return None, spec.model, spec.patch_size, None
    state, pretrain_spec = read_checkpoint(spec.init)
    if pretrain_spec:
        return state, pretrain_spec["model"], pretrain_spec["patch_size"], pretrain_spec.get("img_size")
    return state, spec.model, spec.patch_size, None


def train_transform(spec: DownstreamSpec, img_size: int, mean, std):
    if isinstance(spec, FinetuneSpec):
        return create_transform(
            img_size,
            is_training=True,
            auto_augment=None if spec.auto_augment == "none" else spec.auto_augment,
            interpolation="bicubic",
            re_prob=spec.reprob,
            re_mode="pixel",
            re_count=1,
            mean=mean,
            std=std,
        )
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(img_size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def evaluation_transform(info, img_size: int):
    """The evaluation split's transform: small images (below 64 px) whole, larger ones MAE's 0.875 centre crop."""
    return eval_transform(img_size, info.mean, info.std, crop_pct=1.0 if img_size < 64 else 0.875)


def classification_step(criterion, mixup):
    def step(model, batch):
        images, targets = batch
        if mixup is not None:
            images, targets = mixup(images, targets)
        return criterion(model(images), targets), {}

    return step


def optimizer_for(spec: DownstreamSpec, model: nn.Module, lr: float, device: torch.device | str = "cpu"):
    if isinstance(spec, LinprobeSpec):
        weights = [p for p in model.head.parameters() if p.ndim > 1]
        biases = [p for p in model.head.parameters() if p.ndim <= 1]
        # As MAE's LARS: 1-D parameters get neither weight decay nor the trust-ratio scaling.
        groups = [{"params": weights, "always_adapt": True}, {"params": biases, "weight_decay": 0.0}]
        return Lars(groups, lr=lr, momentum=0.9, weight_decay=spec.weight_decay)
    groups = param_groups_layer_decay(model, spec.weight_decay, model.no_weight_decay(), layer_decay=spec.layer_decay)
    return adamw(groups, lr, (0.9, 0.999), device)


class EvaluationStage(Stage):
    """What every evaluation shares: its upstream (hashed before it is loaded: if the file were replaced in
    between, a resume would start afresh, never go stale) and the encoder loaded from it."""

    spec: DownstreamSpec | KnnSpec

    def prepare(self, run: Run) -> None:
        self.state, self.size, self.patch_size, upstream_img_size = encoder_source(self.spec)
        self.img_size = self.spec.image_size(upstream_img_size)

    def facts(self, run: Run, info, train_set, eval_set, train_labels=None) -> dict:
        shape = (self.size, self.patch_size, self.img_size)
        return evaluation_facts(self.spec, run.inputs["upstream"], shape, info, train_set, eval_set, train_labels)


class Transfer(EvaluationStage):
    """Fine-tuning (``FinetuneSpec``) or linear probing (``LinprobeSpec``) of the encoder, evaluated every epoch."""

    spec: DownstreamSpec

    def build(self, run: Run):
        spec, info, img_size = self.spec, CLASSIFICATION_SETS[self.spec.dataset], self.img_size
        self.info, self.finetune = info, isinstance(spec, FinetuneSpec)
        transforms_of = {
            "train": train_transform(spec, img_size, info.mean, info.std),
            "eval": evaluation_transform(info, img_size),
        }
        self.train_set, self.eval_set = (
            fixed_subset(build_classification_dataset(spec.dataset, spec.data_root, split, transform, spec.download), n)
            for (split, transform), n in zip(transforms_of.items(), (spec.train_samples, spec.eval_samples))
        )
        model = build_classifier(
            self.size,
            img_size,
            self.patch_size,
            info.num_classes,
            drop_path=spec.drop_path if self.finetune else 0.0,
            global_pool="avg" if self.finetune else "token",
        )
        if self.state is not None:
            load_encoder(model, self.state)
        if not self.finetune:
            make_linear_probe(model)
        self.model = model.to(run.device)
        return self.model, self.train_set

    def optimizer(self, model, cfg, device):
        return optimizer_for(self.spec, model, cfg.lr, device)

    def step(self, model, cfg):
        spec, mixup = self.spec, None
        if self.finetune and (spec.mixup > 0 or spec.cutmix > 0):
            mixup = Mixup(
                mixup_alpha=spec.mixup,
                cutmix_alpha=spec.cutmix,
                label_smoothing=spec.smoothing,
                num_classes=self.info.num_classes,
            )
            criterion = SoftTargetCrossEntropy()
        elif self.finetune and spec.smoothing > 0:
            criterion = LabelSmoothingCrossEntropy(spec.smoothing)
        else:
            criterion = nn.CrossEntropyLoss()
        return classification_step(criterion, mixup)

    def trainer_options(self, run: Run):
        def evaluate_epoch() -> dict:  # its workers, like the training loop's, leave stop signals to this process
            return evaluate(
                self.model,
                self.eval_set,
                self.spec.eval_batch_size,
                run.device,
                amp_dtype(run.amp),
                num_workers=self.spec.num_workers,
                worker_init_fn=self.trainer.signals.worker_init(),
            )

        return Trainer, {"epoch_end": evaluate_epoch}

    def results(self, run: Run, fitted: dict) -> dict:
        # The first epoch with the highest top-1, from the epoch records the loop kept (also across a resume).
        best = max(fitted["history"], key=lambda record: record["top1"]) if fitted["history"] else {}
        return {
            **fitted,
            "top1": fitted["final"].get("top1"),
            "top5": fitted["final"].get("top5"),
            "best_top1": best.get("top1"),
            "best_epoch": best.get("epoch"),
            "last_epoch": fitted["epochs"],
            **self.facts(run, self.info, self.train_set, self.eval_set, targets_of(self.train_set)),
        }


def run_transfer(
    spec: DownstreamSpec, run_dir: str | Path, resume: bool = False, signals: StopSignals | None = None
) -> dict:
    """Fine-tune (``FinetuneSpec``) or linear-probe (``LinprobeSpec``) into ``run_dir``.

    ``signals``: which signals checkpoint and which stop the run (default ``StopSignals()``).
    """
    return run_stage(Transfer(spec), run_dir, resume, signals)
