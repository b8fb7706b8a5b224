"""Run specifications: everything that decides what a run computes, as plain JSON-able data.

The vocabularies (methods, CNP modes, NoR variants, stages, precisions) are defined here once, as
``Literal`` types; the model, the planner and the command line read them from here. No torch
import: login-node processes (planning, launching) read specs too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from normae.data.registry import CLASSIFICATION_DATASETS, PRETRAIN_DATASETS, short_name
from normae.paths import RunFolder
from normae.spec_base import (  # re-exported: read them from here, where every stage's class is registered
    ACCUM_HELP,
    BATCH_SIZE_HELP,
    GLOBAL_BATCH_HELP,
    SPEC_CLASSES,
    SpecBase,
    batch_part,
    global_batch_problems,
    option,
)
from normae.spec_base import (
    load_spec as load_spec,
)
from normae.spec_base import (
    spec_from_dict as spec_from_dict,
)
from normae.spec_checks import at_least, common_problems, masking_problems, within

Method = Literal["mae", "nor_mae", "sup_mae", "sup_nor_mae", "dmae", "nor_dmae"]
CnpMode = Literal["paper", "authors_code", "random"]
NorVariant = Literal["offdiag", "diag", "token"]
Stage = Literal["pretrain", "finetune", "linprobe", "knn", "bench"]
Amp = Literal["auto", "bf16", "fp16", "none"]

METHODS: tuple[str, ...] = get_args(Method)
# What each method adds to MAE: the NoR term (lambda), SupMAE's supervised branch, DMAE's distillation.
BASE_OF_NOR: dict[str, str] = {"nor_mae": "mae", "sup_nor_mae": "sup_mae", "nor_dmae": "dmae"}  # NoR method -> without
NOR_METHODS: tuple[str, ...] = tuple(BASE_OF_NOR)
SUPERVISED_METHODS: tuple[str, ...] = ("sup_mae", "sup_nor_mae")
DISTILLED_METHODS: tuple[str, ...] = ("dmae", "nor_dmae")
CNP_MODES: tuple[str, ...] = get_args(CnpMode)
NOR_VARIANTS: tuple[str, ...] = get_args(NorVariant)
STAGES: tuple[str, ...] = get_args(Stage)
AMP_MODES: tuple[str, ...] = get_args(Amp)


@dataclass
class PretrainSpec(SpecBase):
    """One pre-training run. Defaults are the paper's recipe (REFERENCE-FACTS.md), on Fashion-MNIST."""

    dataset: str = option("fashion_mnist", "pre-training set: fashion_mnist, imagenet1k, imagenet100 or generated")
    data_root: str | None = option(None, "data folder (default: looked up; see README 'Data')")
    train_samples: int | None = option(None, "use this many images (a fixed seeded subset) instead of the whole set")
    model: str = option("vit_tiny", "model size: vit_micro, vit_mini (CPU scale), vit_tiny, vit_small, vit_base")
    img_size: int | None = option(
        None, "input size in pixels (default: the data set's native size, 28 for Fashion-MNIST)"
    )
    patch_size: int = option(
        2, "patch size in pixels; must divide the image size (2 at 28 px = 16 at 224 px: 14x14 tokens)"
    )
    method: Method = option("nor_mae", "mae or nor_mae")
    lam: float = option(5e-5, "lambda, weight of the NoR loss (nor_mae only)")
    nor_variant: NorVariant = option("offdiag", "NoR relation penalty: offdiag (paper), diag, or token")
    cnp: CnpMode = option(
        "paper",
        "closest-neighbour source: paper (true CNP), authors_code (the public code's selection), random (control)",
    )
    cnp_wrap: bool = option(True, "torus border for the 3x3 neighbour window, as in the authors' code")
    mask_ratio: float = option(0.75, "fraction of patches removed")
    sup_weight: float = option(0.01, "sup_*: weight of the supervised loss (SupMAE's cls_loss_ratio)")
    sup_temperature: float = option(10.0, "sup_*: the cross-entropy sees logits / this (SupMAE: 10)")
    sup_hidden: int = option(3072, "sup_*: hidden width of the head's MLP, with BatchNorm (SupMAE: 3072; 0: linear)")
    teacher: str | None = option(
        None, "dmae / nor_dmae: the frozen teacher, a {'model': ...} MAE checkpoint file or one of our run folders"
    )
    teacher_model: str = option("vit_large", "dmae / nor_dmae: the teacher's model size (DMAE: an MAE ViT-Large)")
    alpha: float = option(1.0, "dmae / nor_dmae: weight of the distillation loss (DMAE's code: 1)")
    distill_depth: float = option(0.75, "dmae / nor_dmae: relative depth of the aligned blocks (DMAE: 9/12 and 18/24)")
    norm_pix_loss: bool = option(True, "per-patch normalised pixel targets (and standardised NoR inputs)")
    epochs: int = option(200, "pre-training epochs")
    warmup_epochs: float = option(40, "linear warm-up epochs, then half-cycle cosine")
    batch_size: int = option(64, BATCH_SIZE_HELP)
    accum_iter: int = option(1, ACCUM_HELP)
    global_batch: int | None = option(None, GLOBAL_BATCH_HELP)
    blr: float = option(1.5e-4, "base learning rate: lr = blr x effective batch / 256")
    lr: float | None = option(None, "absolute learning rate (overrides blr)")
    min_lr: float = option(0.0, "learning rate at the end of the cosine")
    weight_decay: float = option(0.05, "AdamW weight decay (not on biases, norms, tokens, position embeddings)")
    clip_grad: float | None = option(None, "clip the gradient norm to this value")
    amp: Amp = option("auto", "mixed precision: auto (bf16 on CUDA, none on CPU), bf16, fp16 (with grad scaler), none")
    seed: int = option(0, "random seed (data order, augmentation, masks, initialisation)")
    num_workers: int = option(2, "data-loading worker processes")
    checkpoint_minutes: float = option(
        30.0, "also checkpoint every this many minutes (0: only per epoch and on signals)"
    )
    log_every: int = option(20, "write a metrics line every this many optimiser steps")

    stage = "pretrain"

    def problems(self) -> list[str]:
        problems = common_problems(self)
        for name, allowed in (("method", METHODS), ("nor_variant", NOR_VARIANTS), ("cnp", CNP_MODES)):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.dataset not in PRETRAIN_DATASETS:
            problems.append(f"dataset must be one of {', '.join(PRETRAIN_DATASETS)}, got {self.dataset!r}")
        problems += at_least(self, 0, "lam", "sup_weight", "sup_hidden", "alpha")
        problems += masking_problems(self) + global_batch_problems(self)
        if self.sup_temperature <= 0:
            problems.append(f"sup_temperature must be positive, got {self.sup_temperature}")
        if not 0 < self.distill_depth <= 1:
            problems.append(f"distill_depth must be in (0, 1], got {self.distill_depth}")
        if self.method in DISTILLED_METHODS and not self.teacher:
            problems.append(f"method {self.method} needs a teacher: a {{'model': ...}} MAE checkpoint or a run folder")
        return problems

    def inert_fields(self) -> set[str]:
        inert = super().inert_fields()
        if self.method not in SUPERVISED_METHODS:
            inert |= {"sup_weight", "sup_temperature", "sup_hidden"}
        if self.method not in DISTILLED_METHODS:
            inert |= {"teacher", "teacher_model", "alpha", "distill_depth"}
        return inert

    def run_id(self) -> str:
        """A readable id that changes whenever a field that affects the result changes."""
        parts = [
            short_name(self.dataset),
            self.model,
            f"p{self.patch_size}",
            self.method,
        ]
        if self.method in SUPERVISED_METHODS and self.sup_weight != 0.01:
            parts.append(f"sw{self.sup_weight:g}")
        if self.method in DISTILLED_METHODS:
            parts.append(f"t-{self.teacher_model}" + (f"-a{self.alpha:g}" if self.alpha != 1.0 else ""))
        if self.method in NOR_METHODS:
            parts.append(f"lam{self.lam:g}")
            if self.cnp != "paper":
                parts.append(f"cnp-{self.cnp}")
            if self.nor_variant != "offdiag":
                parts.append(self.nor_variant)
        parts += [f"mr{self.mask_ratio:g}", f"ep{self.epochs}", *batch_part(self), f"s{self.seed}"]
        return "-".join(parts) + "-" + self.digest()[:8]


class InitSource:
    """A spec whose encoder comes from ``init``: a pre-training checkpoint, a run folder or 'none'."""

    init: str
    dataset: str

    def init_name(self) -> str:
        """'scratch', the pre-training run folder's name, or the checkpoint file's stem."""
        if self.init == "none":
            return "scratch"
        path = Path(self.init)
        if path.name == RunFolder.CHECKPOINT:
            return path.parent.name
        # A run folder's name has dots in it (mr0.75): only a file's suffix is cut off.
        return path.stem if path.suffix in (".pt", ".pth") else path.name

    def source_problems(self) -> list[str]:
        """Checks shared by every evaluation: a classification set to evaluate on, an encoder to start from."""
        problems = []
        if self.dataset not in CLASSIFICATION_DATASETS:
            problems.append(f"dataset must be one of {', '.join(CLASSIFICATION_DATASETS)}, got {self.dataset!r}")
        if not self.init:
            problems.append("init must be a checkpoint, a run folder or 'none', got an empty string")
        return problems


@dataclass
class DownstreamSpec(InitSource, SpecBase):
    """What fine-tuning and linear probing share: where the encoder comes from and where it is evaluated."""

    init: str = option(
        "none",
        "pre-training checkpoint (a checkpoint.pt, a run folder, or a public {'model': ...} file) "
        "or 'none' (from scratch)",
    )
    dataset: str = option("fashion_mnist", "evaluation set (see README 'Downstream sets')")
    data_root: str | None = option(None, "data folder (default: looked up for Fashion-MNIST; required for the others)")
    download: bool = option(False, "let torchvision download the set if it is missing")
    train_samples: int | None = option(None, "use this many training images (a fixed seeded subset)")
    eval_samples: int | None = option(
        None, "evaluate on this many images of the evaluation split (a fixed seeded subset)"
    )
    model: str = option("vit_tiny", "model size; our own checkpoints override it with the size they were trained at")
    img_size: int | None = option(
        None, "input size (default: the pre-training size for our checkpoints, else the set's native size)"
    )
    patch_size: int = option(2, "patch size; our own checkpoints override it")
    epochs: int = option(100, "epochs")
    warmup_epochs: float = option(5, "linear warm-up epochs, then half-cycle cosine")
    batch_size: int = option(256, BATCH_SIZE_HELP)
    accum_iter: int = option(1, ACCUM_HELP)
    global_batch: int | None = option(None, GLOBAL_BATCH_HELP)
    blr: float = option(5e-4, "base learning rate: lr = blr x effective batch / 256")
    lr: float | None = option(None, "absolute learning rate (overrides blr)")
    min_lr: float = option(1e-6, "learning rate at the end of the cosine")
    weight_decay: float = option(0.05, "weight decay (not on biases, norms, tokens, position embeddings)")
    clip_grad: float | None = option(None, "clip the gradient norm to this value")
    amp: Amp = option("auto", "mixed precision: auto (bf16 on CUDA, none on CPU), bf16, fp16, none")
    seed: int = option(0, "random seed")
    num_workers: int = option(2, "data-loading worker processes")
    checkpoint_minutes: float = option(30.0, "also checkpoint every this many minutes")
    log_every: int = option(20, "write a metrics line every this many optimiser steps")
    eval_batch_size: int = option(256, "images per evaluation batch")

    def problems(self) -> list[str]:
        problems = common_problems(self)
        problems += self.source_problems()
        problems += at_least(self, 1, "eval_samples", "eval_batch_size") + global_batch_problems(self)
        return problems

    def run_id(self) -> str:
        source = self.init_name()
        parts = [self.dataset, self.stage, "from", source, f"ep{self.epochs}", *batch_part(self), f"s{self.seed}"]
        return "-".join(parts) + "-" + self.digest()[:8]


@dataclass
class FinetuneSpec(DownstreamSpec):
    """MAE's end-to-end fine-tuning protocol; defaults are the paper's (REFERENCE-FACTS.md)."""

    stage = "finetune"
    layer_decay: float = option(0.65, "layer-wise lr decay (timm param groups)")
    drop_path: float = option(0.1, "stochastic depth rate")
    auto_augment: str = option("rand-m9-mstd0.5-inc1", "timm auto-augment policy, or 'none'")
    reprob: float = option(0.25, "random erasing probability")
    mixup: float = option(0.8, "mixup alpha (0 disables)")
    cutmix: float = option(1.0, "cutmix alpha (0 disables)")
    smoothing: float = option(0.1, "label smoothing")

    def problems(self) -> list[str]:
        problems = super().problems()
        if not 0 < self.layer_decay <= 1:
            problems.append(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        problems += within(self, "drop_path", 0, 1) + within(self, "smoothing", 0, 1)
        problems += within(self, "reprob", 0, 1, closed=True) + at_least(self, 0, "mixup", "cutmix")
        if (self.mixup > 0 or self.cutmix > 0) and self.batch_size % 2:
            problems.append(f"mixup / cutmix pair up images: batch_size must be even, got {self.batch_size}")
        return problems


@dataclass
class LinprobeSpec(DownstreamSpec):
    """MAE's linear probing: frozen encoder, BatchNorm without affine and a linear head, LARS."""

    stage = "linprobe"
    epochs: int = option(90, "epochs")
    warmup_epochs: float = option(10, "linear warm-up epochs, then half-cycle cosine")
    batch_size: int = option(512, BATCH_SIZE_HELP)
    blr: float = option(0.1, "base learning rate: lr = blr x effective batch / 256")
    min_lr: float = option(0.0, "learning rate at the end of the cosine")
    weight_decay: float = option(0.0, "LARS weight decay")


@dataclass
class KnnSpec(InitSource, SpecBase):
    """Weighted k-NN on frozen encoder features (DINO's protocol): one pass, nothing trained."""

    stage = "knn"
    init: str = option(
        "none", "pre-training checkpoint (a checkpoint.pt, a run folder, or a public {'model': ...} file) or 'none'"
    )
    dataset: str = option("fashion_mnist", "evaluation set: its train split is the memory bank, its eval split queries")
    data_root: str | None = option(None, "data folder (default: looked up for Fashion-MNIST; required for the others)")
    download: bool = option(False, "let torchvision download the set if it is missing")
    train_samples: int | None = option(None, "use this many training images as the memory bank (a fixed subset)")
    eval_samples: int | None = option(None, "query this many images of the evaluation split (a fixed subset)")
    model: str = option("vit_tiny", "model size; our own checkpoints override it with the size they were trained at")
    img_size: int | None = option(
        None, "input size (default: the pre-training size for our checkpoints, else the set's native size)"
    )
    patch_size: int = option(2, "patch size; our own checkpoints override it")
    k: int = option(20, "neighbours that vote (DINO: 20)")
    temperature: float = option(0.07, "a neighbour's vote is exp(cosine similarity / temperature) (DINO: 0.07)")
    batch_size: int = option(256, "images per feature-extraction batch")
    amp: Amp = option("auto", "mixed precision of the encoder: auto (bf16 on CUDA, none on CPU), bf16, fp16, none")
    seed: int = option(0, "random seed (the encoder from 'none' is initialised with it)")
    num_workers: int = option(2, "data-loading worker processes")

    def problems(self) -> list[str]:
        problems = at_least(self, 1, "train_samples", "eval_samples", "img_size", "patch_size", "k", "batch_size")
        problems += at_least(self, 0, "num_workers")
        problems += self.source_problems()
        if self.temperature <= 0:
            problems.append(f"temperature must be positive, got {self.temperature}")
        if (
            self.img_size is not None
            and self.img_size >= 1
            and self.patch_size >= 1
            and self.img_size % self.patch_size
        ):
            problems.append(f"patch_size {self.patch_size} does not divide img_size {self.img_size}")
        return problems

    def run_id(self) -> str:
        return f"{self.dataset}-knn-from-{self.init_name()}-k{self.k}-s{self.seed}-{self.digest()[:8]}"


@dataclass
class BenchSpec(SpecBase):
    """The cost claim's measurement as a run: MAE vs NoR-MAE step time and peak memory, interleaved in
    one process (normae.analysis.bench), on whatever device the job gets (a GPU job at the paper scale)."""

    stage = "bench"
    model: str = option("vit_tiny", "model size")
    img_size: int = option(224, "input size in pixels")
    patch_size: int = option(16, "patch size in pixels")
    batch_size: int = option(256, "images per step")
    steps: int = option(50, "timed steps per method")
    warmup: int = option(10, "untimed steps per method first")
    lam: float = option(5e-5, "lambda of the NoR-MAE model")
    cnp: CnpMode = option("paper", "closest-neighbour source of the NoR-MAE model")
    methods: str = option("mae,nor_mae,sup_mae,dmae", "the methods timed, interleaved (comma-separated)")
    teacher_model: str = option("vit_base", "DMAE's teacher size (random weights: its forward's cost is what counts)")
    amp: Amp = option("auto", "mixed precision: auto (bf16 on CUDA, none on CPU), bf16, fp16, none")
    dataset: str | None = option(
        None, "read the images through this pre-training set's loader (None: synthetic images, said so in the result)"
    )
    data_root: str | None = option(None, "the data set's folder")
    num_workers: int = option(2, "data-loading worker processes (with a dataset)")
    seed: int = option(0, "random seed (weights, images, masks)")

    def problems(self) -> list[str]:
        problems = at_least(self, 1, "img_size", "patch_size", "batch_size", "steps") + at_least(self, 0, "warmup")
        if self.dataset is not None and self.dataset not in PRETRAIN_DATASETS:
            problems.append(f"dataset must be one of {', '.join(PRETRAIN_DATASETS)} or null, got {self.dataset!r}")
        if self.cnp not in CNP_MODES:
            problems.append(f"cnp must be one of {', '.join(CNP_MODES)}, got {self.cnp!r}")
        unknown = [method for method in self.methods.split(",") if method not in METHODS]
        if unknown or "mae" not in self.methods.split(","):
            problems.append(f"methods must list mae and others of {', '.join(METHODS)}, got {self.methods!r}")
        if self.img_size >= 1 and self.patch_size >= 1 and self.img_size % self.patch_size:
            problems.append(f"patch_size {self.patch_size} does not divide img_size {self.img_size}")
        return problems

    def run_id(self) -> str:
        images = short_name(self.dataset) if self.dataset else "synthetic"
        parts = ["bench", self.model, f"p{self.patch_size}", f"{self.img_size}px", f"b{self.batch_size}", images]
        return "-".join(parts) + "-" + self.digest()[:8]


assert set(SPEC_CLASSES) == set(STAGES), "every stage of normae.spec has a spec class"
