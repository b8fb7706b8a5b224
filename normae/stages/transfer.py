"""Fine-tuning and linear-probing stages: a pre-trained (or fresh) encoder -> top-1 / top-5 accuracy.

Both run on the same training loop as pre-training, so checkpoints, exact resume, DDP, AMP and
``summary.json`` work the same way. The model is evaluated on the set's official evaluation
split after every epoch; the summary reports the last and the best epoch.

An evaluation remembers which upstream it started from: the SHA-256 of the checkpoint file
``init`` names (``upstream_digest``), in its checkpoint and its summary (``init_digest``). The
file's digest, rather than the pre-training summary's: it is exactly what the encoder was loaded
from, it works for public checkpoint files that have no summary, and a summary rewritten for the
same weights changes nothing. A resume whose upstream file has changed since (its pre-training run
was trained again under the same id) starts the evaluation afresh, with one line saying why.
"""

from __future__ import annotations

import hashlib
import time
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
from normae.errors import CheckpointError
from normae.paths import RunFolder
from normae.spec import DownstreamSpec, FinetuneSpec, KnnSpec, LinprobeSpec
from normae.stages.common import (
    evaluation_facts,
    finish_run_folder,
    fixed_subset,
    loop_config,
    open_run_folder,
    spec_withdrawn_on_early_failure,
    start_run_folder,
)
from normae.training.loop import Trainer
from normae.training.optim import adamw
from normae.training.runtime import (
    amp_dtype,
    environment_facts,
    resolve_amp,
    seed_everything,
    setup_distributed,
    wrap_ddp,
)
from normae.training.signals import StopSignals


def upstream_checkpoint(spec: DownstreamSpec | KnnSpec) -> Path | None:
    """The checkpoint file ``spec.init`` names (None for 'none'); refused if it belongs to an unfinished run.

    A run folder (one with a spec.json), or a checkpoint file inside one, is an upstream only once
    its summary.json is there: until then its checkpoint is some epoch of a run still going.
    """
    if spec.init == "none":
        return None
    path = Path(spec.init)
    folder = RunFolder(path if path.is_dir() else path.parent)
    if folder.spec_path.exists() and not folder.is_finished():
        raise CheckpointError(
            f"init {spec.init}: {folder.path} is an unfinished run (it has no readable {RunFolder.SUMMARY}): "
            "finish that run first, or start from a finished one"
        )
    return folder.checkpoint_path if path.is_dir() else path


def upstream_digest(spec: DownstreamSpec | KnnSpec) -> str | None:
    """'sha256:<hex>' of the checkpoint file ``spec.init`` names; None for 'none' or a missing file
    (``read_checkpoint`` then says what is missing)."""
    path = upstream_checkpoint(spec)
    if path is None or not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


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


def run_transfer(
    spec: DownstreamSpec, run_dir: str | Path, resume: bool = False, signals: StopSignals | None = None
) -> dict:
    """Fine-tune (``FinetuneSpec``) or linear-probe (``LinprobeSpec``) into ``run_dir``.

    ``signals``: which signals checkpoint and which stop the run (default ``StopSignals()``).
    """
    folder, done = open_run_folder(spec, run_dir)
    if done is not None:
        return done
    info = CLASSIFICATION_SETS[spec.dataset]
    # Hashed before it is loaded: if the file were replaced in between, a resume would start afresh, never go stale.
    upstream = upstream_digest(spec)
    state, size, patch_size, pretrain_img_size = encoder_source(spec)
    img_size = spec.img_size or pretrain_img_size or info.img_size
    rank, world_size, device = setup_distributed()
    with start_run_folder(folder, spec, rank, device) as finished, spec_withdrawn_on_early_failure(folder, rank):
        if finished is not None:
            return finished
        seed_everything(spec.seed)
        train_set = fixed_subset(
            build_classification_dataset(
                spec.dataset,
                spec.data_root,
                "train",
                train_transform(spec, img_size, info.mean, info.std),
                spec.download,
            ),
            spec.train_samples,
        )
        eval_set = fixed_subset(
            build_classification_dataset(
                spec.dataset,
                spec.data_root,
                "eval",
                eval_transform(img_size, info.mean, info.std, crop_pct=1.0 if img_size < 64 else 0.875),
                spec.download,
            ),
            spec.eval_samples,
        )
        finetune = isinstance(spec, FinetuneSpec)
        model = build_classifier(
            size,
            img_size,
            patch_size,
            info.num_classes,
            drop_path=spec.drop_path if finetune else 0.0,
            global_pool="avg" if finetune else "token",
        )
        if state is not None:
            load_encoder(model, state)
        if not finetune:
            make_linear_probe(model)
        model.to(device)

        amp = resolve_amp(spec.amp, device)
        cfg, batch_plan = loop_config(spec, world_size, amp, len(train_set))
        optimizer = optimizer_for(spec, model, cfg.lr, device)
        mixup = None
        if finetune and (spec.mixup > 0 or spec.cutmix > 0):
            mixup = Mixup(
                mixup_alpha=spec.mixup,
                cutmix_alpha=spec.cutmix,
                label_smoothing=spec.smoothing,
                num_classes=info.num_classes,
            )
            criterion = SoftTargetCrossEntropy()
        elif finetune and spec.smoothing > 0:
            criterion = LabelSmoothingCrossEntropy(spec.smoothing)
        else:
            criterion = nn.CrossEntropyLoss()
        wrapped = wrap_ddp(model, device, world_size)

        def evaluate_epoch() -> dict:  # its workers, like the training loop's, leave stop signals to this process
            return evaluate(
                model,
                eval_set,
                spec.eval_batch_size,
                device,
                amp_dtype(amp),
                num_workers=spec.num_workers,
                worker_init_fn=trainer.signals.worker_init(),
            )

        trainer = Trainer(
            wrapped,
            train_set,
            cfg,
            folder.path,
            classification_step(criterion, mixup),
            optimizer,
            device,
            spec=spec.to_dict(),
            epoch_end=evaluate_epoch,
            signals=signals,
            upstream=upstream,
        )
        started = time.time()
        results = trainer.fit(resume=resume)
        # The first epoch with the highest top-1, from the epoch records the loop kept (also across a resume).
        best = max(results["history"], key=lambda record: record["top1"]) if results["history"] else {}
        train_targets = targets_of(train_set)
        return finish_run_folder(
            folder,
            rank,
            spec,
            {
                **results,
                "top1": results["final"].get("top1"),
                "top5": results["final"].get("top5"),
                "best_top1": best.get("top1"),
                "best_epoch": best.get("epoch"),
                "last_epoch": results["epochs"],
                **evaluation_facts(
                    spec, upstream, (size, patch_size, img_size), info, train_set, eval_set, train_targets
                ),
                "lr": cfg.lr,
                "batch": batch_plan.facts(),
                "amp": amp,
                **environment_facts(device),
                "wall_seconds_this_session": time.time() - started,
            },
        )
