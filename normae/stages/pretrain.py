"""The pre-training stage: a PretrainSpec -> a finished run folder (MAE, NoR-MAE, SupMAE, DMAE and their NoR
variants)."""

from __future__ import annotations

from pathlib import Path

import torch
from timm.optim import param_groups_weight_decay

from normae.core.diagnostics import DIAGNOSTICS, DiagnosedStep, diagnostics_interval, diagnostics_summary
from normae.core.model import build_mae_from_spec
from normae.core.teacher import load_teacher
from normae.data.dali_loader import import_dali
from normae.data.pretrain import build_pretrain_dataset
from normae.data.registry import DATASETS
from normae.errors import ConfigError
from normae.spec import DISTILLED_METHODS, NOR_METHODS, SUPERVISED_METHODS, PretrainSpec
from normae.stages.common import Run, Stage, fixed_subset, run_stage
from normae.training.dali_batches import DaliTrainer
from normae.training.loop import Trainer
from normae.training.optim import adamw
from normae.training.signals import StopSignals


def pretrain_step(model, batch):
    """One forward pass; the labels reach the model (SupMAE's branch uses them, the other methods do not)."""
    images, labels, noise = batch
    out = model(images, noise, labels=labels)
    metrics = {"loss_rec": out.loss_rec, "loss_nor": out.loss_nor}
    method = getattr(model, "module", model).method  # under DDP the model is its .module
    if method in SUPERVISED_METHODS:
        metrics["loss_sup"] = out.loss_sup
    if method in DISTILLED_METHODS:
        metrics["loss_distill"] = out.loss_distill
    return out.loss, metrics


class Pretraining(Stage):
    """The model of ``spec.method`` on its pre-training set; NoR methods' steps are diagnosed."""

    spec: PretrainSpec

    def __init__(self, spec: PretrainSpec):
        super().__init__(spec)
        self.compile = spec.compile
        self.teacher = None  # DMAE's, read by prepare

    def prepare(self, run: Run) -> None:
        """DMAE's teacher is read (before the seed: building it draws random numbers), DALI and labels checked."""
        spec = self.spec
        if spec.method in DISTILLED_METHODS:
            self.teacher = load_teacher(spec.teacher, spec.teacher_model, spec.image_size, spec.patch_size)
        if spec.loader == "dali":
            import_dali()  # without DALI: one line naming the package
        if spec.method in SUPERVISED_METHODS and not DATASETS[spec.dataset].num_classes:
            raise ConfigError(
                f"method {spec.method} needs labels: {spec.dataset} has no classes (choose a labelled set)"
            )

    def build(self, run: Run):
        spec = self.spec
        num_classes = DATASETS[spec.dataset].num_classes if spec.method in SUPERVISED_METHODS else None
        dataset = build_pretrain_dataset(spec.dataset, root=spec.data_root, img_size=spec.image_size)
        dataset = fixed_subset(dataset, spec.train_samples)
        model = build_mae_from_spec(spec, spec.image_size, num_classes, self.teacher).to(run.device)
        if run.world_size > 1 and run.device.type == "cuda" and spec.method in SUPERVISED_METHODS:
            # SupMAE's head has a BatchNorm: its statistics over the whole step's processes (CUDA only)
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.num_patches = model.patch_embed.num_patches
        self.parameters_encoder = sum(
            p.numel() for k, p in model.named_parameters() if not k.startswith(("decoder", "mask_token"))
        )
        self.train_images = len(dataset)
        return model, dataset

    def optimizer(self, model, cfg, device):
        groups = param_groups_weight_decay(model, self.spec.weight_decay, model.no_weight_decay())
        return adamw(groups, cfg.lr, cfg.betas, device)

    def step(self, model, cfg):
        step = DiagnosedStep(
            pretrain_step, model, diagnostics_interval(cfg.log_every), cfg.accum_iter, self.spec.method in NOR_METHODS
        )
        step.state = lambda: self.trainer.state  # the Trainer replaces its state on resume
        return step

    def trainer_options(self, run: Run):
        options = {"noise_length": self.num_patches, "step_line_metrics": DIAGNOSTICS}
        if self.spec.loader != "dali":
            return Trainer, options
        # DALI decodes and crops the same files (normae.training.dali_batches)
        dali = {"img_size": self.spec.image_size, "data_name": self.spec.dataset}
        return DaliTrainer, {**options, **dali, "num_threads": self.spec.num_workers or 4}

    def results(self, run: Run, fitted: dict) -> dict:
        if run.rank == 0 and self.spec.method in NOR_METHODS:  # metrics.jsonl holds every diagnosed step
            fitted["diagnostics"] = diagnostics_summary(fitted["history"], run.folder.read_metrics("step"))
        return {
            **fitted,
            "train_images": self.train_images,
            "image_size": self.spec.image_size,
            "num_patches": self.num_patches,
            "parameters_encoder": self.parameters_encoder,
        }


def run_pretrain(
    spec: PretrainSpec, run_dir: str | Path, resume: bool = False, signals: StopSignals | None = None
) -> dict:
    """Pre-train as ``spec`` says into ``run_dir``; returns the summary (also written to summary.json).

    ``signals``: which signals checkpoint and which stop the run (default ``StopSignals()``).
    """
    return run_stage(Pretraining(spec), run_dir, resume, signals)
