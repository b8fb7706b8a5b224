"""The loop's settings and its learning-rate schedule: per-iteration linear warm-up, then MAE's half-cycle
cosine or, for segmentation, mmsegmentation's poly decay."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


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
    decay: Literal["cosine", "poly"] = "cosine"
    poly_power: float = 1.0


def learning_rate(epoch: float, cfg: LoopConfig) -> float:
    """Linear warm-up, then half-cycle cosine (or poly) to ``min_lr``; ``epoch`` is fractional.

    Poly is mmsegmentation's PolyLR after its LinearLR warm-up: (1 - progress) ** power over the
    iterations after the warm-up.
    """
    if epoch < cfg.warmup_epochs:
        return cfg.lr * epoch / cfg.warmup_epochs
    progress = (epoch - cfg.warmup_epochs) / max(cfg.epochs - cfg.warmup_epochs, 1e-12)
    if cfg.decay == "poly":
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * max(1.0 - progress, 0.0) ** cfg.poly_power
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
