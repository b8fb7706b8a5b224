"""Run specifications: everything that decides what a run computes, as plain JSON-able data.

No torch import here: login-node processes (planning, launching) read specs too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

DATASET_SHORT_NAMES = {"fashion_mnist": "fmnist", "imagenet1k": "in1k", "imagenet100": "in100", "generated": "gen"}


def option(default, help: str, **metadata):
    """A spec field with the help text that ``normae pretrain --help`` shows."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class PretrainSpec:
    """One pre-training run. Defaults are the paper's recipe (REFERENCE-FACTS.md), on Fashion-MNIST."""

    dataset: str = option("fashion_mnist", "pre-training set: fashion_mnist, imagenet1k, imagenet100 or generated")
    data_root: str | None = option(None, "data folder (default: looked up; see README 'Data')")
    train_samples: int | None = option(None, "use this many images (a fixed seeded subset) instead of the whole set")
    model: str = option("vit_tiny", "model size: vit_micro, vit_mini (CPU scale), vit_tiny, vit_small, vit_base")
    img_size: int | None = option(None, "input size in pixels (default: the data set's native size, 28 for Fashion-MNIST)")
    patch_size: int = option(2, "patch size in pixels; must divide the image size (2 at 28 px = 16 at 224 px: 14x14 tokens)")
    method: str = option("nor_mae", "mae or nor_mae")
    lam: float = option(5e-5, "lambda, weight of the NoR loss (nor_mae only)")
    nor_variant: str = option("offdiag", "NoR relation penalty: offdiag (paper), diag, or token")
    cnp: str = option("paper", "closest-neighbour source: paper (true CNP), authors_code (the public code's selection), random (control)")
    cnp_wrap: bool = option(True, "torus border for the 3x3 neighbour window, as in the authors' code")
    mask_ratio: float = option(0.75, "fraction of patches removed")
    norm_pix_loss: bool = option(True, "per-patch normalised pixel targets (and standardised NoR inputs)")
    epochs: int = option(200, "pre-training epochs")
    warmup_epochs: float = option(40, "linear warm-up epochs, then half-cycle cosine")
    batch_size: int = option(64, "images per process per step")
    accum_iter: int = option(1, "gradient accumulation steps (effective batch = batch_size x accum_iter x processes)")
    blr: float = option(1.5e-4, "base learning rate: lr = blr x effective batch / 256")
    lr: float | None = option(None, "absolute learning rate (overrides blr)")
    min_lr: float = option(0.0, "learning rate at the end of the cosine")
    weight_decay: float = option(0.05, "AdamW weight decay (not on biases, norms, tokens, position embeddings)")
    clip_grad: float | None = option(None, "clip the gradient norm to this value")
    amp: str = option("auto", "mixed precision: auto (bf16 on CUDA, none on CPU), bf16, fp16 (with grad scaler), none")
    seed: int = option(0, "random seed (data order, augmentation, masks, initialisation)")
    num_workers: int = option(2, "data-loading worker processes")
    checkpoint_minutes: float = option(30.0, "also checkpoint every this many minutes (0: only per epoch and on signals)")
    log_every: int = option(20, "write a metrics line every this many optimiser steps")

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        problems = []
        if self.method not in ("mae", "nor_mae"):
            problems.append(f"method must be mae or nor_mae, got {self.method!r}")
        if self.nor_variant not in ("offdiag", "diag", "token"):
            problems.append(f"nor_variant must be offdiag, diag or token, got {self.nor_variant!r}")
        if self.cnp not in ("paper", "authors_code", "random"):
            problems.append(f"cnp must be paper, authors_code or random, got {self.cnp!r}")
        if self.amp not in ("auto", "bf16", "fp16", "none"):
            problems.append(f"amp must be auto, bf16, fp16 or none, got {self.amp!r}")
        if not 0 <= self.mask_ratio < 1:
            problems.append(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.img_size is not None and self.img_size % self.patch_size:
            problems.append(f"patch_size {self.patch_size} does not divide img_size {self.img_size}")
        for name in ("epochs", "batch_size", "accum_iter", "patch_size", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            problems.append(f"warmup_epochs must be within [0, epochs], got {self.warmup_epochs}")
        if problems:
            raise ValueError("invalid pre-training spec: " + "; ".join(problems))

    @property
    def stage(self) -> str:
        return "pretrain"

    def run_id(self) -> str:
        """A readable id that changes whenever a field that affects the result changes."""
        parts = [
            DATASET_SHORT_NAMES.get(self.dataset, self.dataset),
            self.model,
            f"p{self.patch_size}",
            self.method,
        ]
        if self.method == "nor_mae":
            parts.append(f"lam{self.lam:g}")
            if self.cnp != "paper":
                parts.append(f"cnp-{self.cnp}")
            if self.nor_variant != "offdiag":
                parts.append(self.nor_variant)
        parts += [f"mr{self.mask_ratio:g}", f"ep{self.epochs}", f"s{self.seed}"]
        return "-".join(parts) + "-" + self.digest()[:8]

    def digest(self) -> str:
        """Hash of the fields that change what is computed (not logging or worker counts)."""
        cosmetic = {"num_workers", "checkpoint_minutes", "log_every", "data_root"}
        payload = {k: v for k, v in self.to_dict().items() if k not in cosmetic}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PretrainSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"stage"})
        if unknown:
            raise ValueError(f"unknown spec keys {unknown}; known keys: {sorted(known)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, path: str | Path) -> "PretrainSpec":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_json(self) -> str:
        return json.dumps({"stage": self.stage, **self.to_dict()}, indent=2, sort_keys=True) + "\n"
