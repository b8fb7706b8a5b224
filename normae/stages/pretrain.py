"""The pre-training stage: a PretrainSpec -> a finished run folder (MAE, NoR-MAE, SupMAE, DMAE and their NoR
variants)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
from normae.stages.common import (
    finish_run_folder,
    fixed_subset,
    loop_config,
    open_run_folder,
    spec_withdrawn_on_early_failure,
    start_run_folder,
)
from normae.training.dali_batches import DaliTrainer
from normae.training.loop import Trainer
from normae.training.optim import adamw
from normae.training.runtime import environment_facts, resolve_amp, seed_everything, setup_distributed, wrap_ddp
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


def run_pretrain(
    spec: PretrainSpec, run_dir: str | Path, resume: bool = False, signals: StopSignals | None = None
) -> dict:
    """Pre-train as ``spec`` says into ``run_dir``; returns the summary (also written to summary.json).

    ``signals``: which signals checkpoint and which stop the run (default ``StopSignals()``).
    """
    folder, done = open_run_folder(spec, run_dir)
    if done is not None:
        return done
    img_size = spec.img_size or DATASETS[spec.dataset].img_size
    # DMAE's teacher (and DALI) is read and checked before anything of the run folder is written
    distilled = spec.method in DISTILLED_METHODS
    teacher = load_teacher(spec.teacher, spec.teacher_model, img_size, spec.patch_size) if distilled else None
    if spec.loader == "dali":
        import_dali()  # without DALI, one line naming the package, also before the run folder is written
    num_classes = DATASETS[spec.dataset].num_classes if spec.method in SUPERVISED_METHODS else None
    if spec.method in SUPERVISED_METHODS and not num_classes:
        raise ConfigError(f"method {spec.method} needs labels: {spec.dataset} has no classes (choose a labelled set)")
    rank, world_size, device = setup_distributed()
    with start_run_folder(folder, spec, rank, device) as finished, spec_withdrawn_on_early_failure(folder, rank):
        if finished is not None:
            return finished
        seed_everything(spec.seed)
        dataset = fixed_subset(
            build_pretrain_dataset(spec.dataset, root=spec.data_root, img_size=spec.img_size), spec.train_samples
        )
        model = build_mae_from_spec(spec, img_size, num_classes=num_classes, teacher=teacher).to(device)
        if world_size > 1 and device.type == "cuda" and spec.method in SUPERVISED_METHODS:
            # SupMAE's head has a BatchNorm: its statistics over the whole step's processes (CUDA only)
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        num_patches = model.patch_embed.num_patches
        amp = resolve_amp(spec.amp, device)
        cfg, batch_plan = loop_config(spec, world_size, amp, len(dataset))
        optimizer = adamw(
            param_groups_weight_decay(model, spec.weight_decay, model.no_weight_decay()), cfg.lr, cfg.betas, device
        )
        wrapped = wrap_ddp(model, device, world_size)
        if spec.compile:  # after DDP, as torch advises; checkpoints hold the plain module's weights (loop.unwrap)
            wrapped = torch.compile(wrapped)
        step = DiagnosedStep(
            pretrain_step, model, diagnostics_interval(cfg.log_every), cfg.accum_iter, spec.method in NOR_METHODS
        )
        trainer_class: type[Trainer] = Trainer
        dali_options: dict[str, Any] = {}
        if spec.loader == "dali":  # DALI decodes and crops the same files (normae.training.dali_batches)
            trainer_class = DaliTrainer
            dali_options = {"img_size": img_size, "data_name": spec.dataset, "num_threads": spec.num_workers or 4}
        trainer = trainer_class(
            wrapped,
            dataset,
            cfg,
            folder.path,
            step,
            optimizer,
            device,
            noise_length=num_patches,
            spec=spec.to_dict(),
            signals=signals,
            step_line_metrics=DIAGNOSTICS,
            **dali_options,
        )
        step.state = lambda: trainer.state  # the Trainer replaces its state on resume
        started = time.time()
        results = trainer.fit(resume=resume)
        if rank == 0 and spec.method in NOR_METHODS:  # metrics.jsonl holds every diagnosed step
            results["diagnostics"] = diagnostics_summary(results["history"], folder.read_metrics("step"))
        return finish_run_folder(
            folder,
            rank,
            spec,
            {
                **results,
                "lr": cfg.lr,
                "batch": batch_plan.facts(),
                "amp": amp,
                **environment_facts(device),
                "train_images": len(dataset),
                "image_size": img_size,
                "num_patches": num_patches,
                "parameters_encoder": sum(
                    p.numel() for k, p in model.named_parameters() if not k.startswith(("decoder", "mask_token"))
                ),
                "wall_seconds_this_session": time.time() - started,
            },
        )
