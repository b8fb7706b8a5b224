"""Spec -> run folder: build the model, data and loop, and write spec, checkpoint, metrics and summary.

A run folder holds ``spec.json`` (first), ``checkpoint.pt`` and ``metrics.jsonl`` (during the run)
and ``summary.json`` (last, atomically): a folder without ``summary.json`` is not finished.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.distributed as dist
from timm.optim import param_groups_weight_decay
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Subset

from normae.training.checkpoint import atomic_write_text
from normae.data.sources import DATASETS, build_pretrain_dataset
from normae.core.model import build_mae
from normae.spec import PretrainSpec
from normae.training.loop import LoopConfig, Trainer, seed_everything


def setup_distributed() -> tuple[int, int, torch.device]:
    """Join the process group that torchrun / submitit describe in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), device


def wrap_ddp(model: torch.nn.Module, device: torch.device, world_size: int) -> torch.nn.Module:
    if world_size == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def resolve_amp(amp: str, device: torch.device) -> str:
    if amp == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "none"
    return amp


def write_spec(run_dir: Path, spec) -> None:
    """Write ``spec.json``, refusing a folder that already holds a different spec."""
    path = run_dir / "spec.json"
    if path.exists():
        existing = json.loads(path.read_text())
        if existing.get("stage") != spec.stage or type(spec).from_dict(existing).digest() != spec.digest():
            raise FileExistsError(f"{run_dir} holds a run of a different spec ({path}); choose another output folder")
    atomic_write_text(path, spec.to_json())


def fixed_subset(dataset, size: int | None):
    """The same ``size`` images for every run (seed 0, whatever the run's seed), or all of them."""
    if size is None or size >= len(dataset):
        return dataset
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:size]
    return Subset(dataset, sorted(chosen.tolist()))


def finished_summary(run_dir: Path) -> dict | None:
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        print(f"[normae] {run_dir} is already finished ({summary_path}); nothing to do")
        return json.loads(summary_path.read_text())
    return None


def loop_config(spec, world_size: int, amp: str) -> LoopConfig:
    """The loop settings every stage's spec carries; lr = blr x effective batch / 256 unless given."""
    effective_batch = spec.batch_size * spec.accum_iter * world_size
    return LoopConfig(
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        lr=spec.lr if spec.lr is not None else spec.blr * effective_batch / 256,
        accum_iter=spec.accum_iter,
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


def environment_facts(device: torch.device) -> dict:
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
    }


def write_summary(run_dir: Path, rank: int, summary: dict) -> dict:
    if rank == 0:
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def pretrain_step(model, batch):
    images, _, noise = batch
    out = model(images, noise)
    return out.loss, {"loss_rec": out.loss_rec, "loss_nor": out.loss_nor}


def run_pretrain(spec: PretrainSpec, run_dir: str | Path, resume: bool = False) -> dict:
    """Pre-train as ``spec`` says into ``run_dir``; returns the summary (also written to summary.json)."""
    run_dir = Path(run_dir)
    done = finished_summary(run_dir)
    if done is not None:
        return done
    rank, world_size, device = setup_distributed()
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_spec(run_dir, spec)
    seed_everything(spec.seed)
    dataset = fixed_subset(build_pretrain_dataset(spec.dataset, root=spec.data_root, img_size=spec.img_size), spec.train_samples)
    img_size = spec.img_size or DATASETS[spec.dataset].img_size
    model = build_mae(
        spec.model,
        img_size=img_size,
        patch_size=spec.patch_size,
        mask_ratio=spec.mask_ratio,
        norm_pix_loss=spec.norm_pix_loss,
        method=spec.method,
        lam=spec.lam,
        nor_variant=spec.nor_variant,
        cnp=spec.cnp,
        cnp_wrap=spec.cnp_wrap,
    ).to(device)
    num_patches = model.patch_embed.num_patches
    amp = resolve_amp(spec.amp, device)
    cfg = loop_config(spec, world_size, amp)
    optimizer = torch.optim.AdamW(
        param_groups_weight_decay(model, spec.weight_decay, model.no_weight_decay()), lr=cfg.lr, betas=cfg.betas
    )
    wrapped = wrap_ddp(model, device, world_size)
    trainer = Trainer(wrapped, dataset, cfg, run_dir, pretrain_step, optimizer, device, noise_length=num_patches, spec=spec.to_dict())
    started = time.time()
    results = trainer.fit(resume=resume)
    return write_summary(run_dir, rank, {
        "run_id": spec.run_id(),
        "stage": "pretrain",
        "spec": spec.to_dict(),
        **results,
        "lr": cfg.lr,
        "amp": amp,
        **environment_facts(device),
        "train_images": len(dataset),
        "image_size": img_size,
        "num_patches": num_patches,
        "parameters_encoder": sum(p.numel() for k, p in model.named_parameters() if not k.startswith(("decoder", "mask_token"))),
        "wall_seconds_this_session": time.time() - started,
    })
