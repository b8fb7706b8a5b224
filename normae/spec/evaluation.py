"""The evaluation runs' specs: an encoder from ``init`` (a pre-training checkpoint, a run folder, a public
file or 'none') fine-tuned, linear-probed, k-NN-classified or trained for segmentation (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from normae.data.registry import CLASSIFICATION_DATASETS, SEGMENTATION_DATASETS
from normae.paths import RunFolder
from normae.spec.base import (
    ACCUM_HELP,
    BATCH_SIZE_HELP,
    GLOBAL_BATCH_HELP,
    SpecBase,
    batch_part,
    batch_problems,
    default_image_size,
    option,
)
from normae.spec.checks import at_least, common_problems, within
from normae.spec.vocabulary import Amp


class InitSource:
    """A spec whose encoder comes from ``init``: a pre-training checkpoint, a run folder or 'none'."""

    init: str
    dataset: str
    img_size: int | None
    datasets: tuple[str, ...] = CLASSIFICATION_DATASETS  # the sets this protocol evaluates on

    def image_size(self, upstream_img_size: int | None = None) -> int:
        """The input size: ``img_size``, else the size the upstream was pre-trained at (our own
        checkpoints record it), else the set's."""
        return self.img_size or upstream_img_size or default_image_size(self.dataset)

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
        """Checks shared by every evaluation: a set of the protocol's to evaluate on, an encoder to start from."""
        problems = []
        if self.dataset not in self.datasets:
            problems.append(f"dataset must be one of {', '.join(self.datasets)}, got {self.dataset!r}")
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
    dataset: str = option("fashion_mnist", "evaluation set (see docs/evaluations.md, 'Downstream sets')")
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
        problems += at_least(self, 1, "eval_samples", "eval_batch_size") + batch_problems(self)
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
class SegmentSpec(DownstreamSpec):
    """Semantic segmentation: UperNet on the encoder, trained end to end (MAE's ADE20K protocol).

    Defaults are MAE's recipe as mmsegmentation's MAE config runs it
    (configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py): 512 px crops, batch 16, AdamW
    lr 1e-4 (blr 1.6e-3 x 16 / 256), betas (0.9, 0.999), weight decay 0.05, layer decay 0.65, drop
    path 0.1, 1,500 warm-up iterations (1.19 epochs of 20,210 images at batch 16), then poly decay
    (power 1) to 0; MAE's paper (A.4) says 100 epochs where that config runs 160k iterations
    (127 epochs). docs/evaluations.md ("normae segment") lists each number's source.
    """

    stage = "segment"
    datasets = SEGMENTATION_DATASETS
    dataset: str = option("fashion_mnist_canvas", "segmentation set: ade20k or fashion_mnist_canvas (the CPU stand-in)")
    data_root: str | None = option(None, "data folder (ade20k: the folder holding ADEChallengeData2016)")
    img_size: int | None = option(None, "training crop in pixels (default: the set's, 512 for ADE20K)")
    patch_size: int = option(16, "patch size; our own checkpoints override it")
    epochs: int = option(100, "epochs (MAE's paper: 100; mmsegmentation's config: 160k iterations, 127 epochs)")
    warmup_epochs: float = option(1.19, "linear warm-up epochs (1,500 iterations at batch 16), then poly decay")
    batch_size: int = option(16, BATCH_SIZE_HELP)
    blr: float = option(1.6e-3, "base learning rate: lr = blr x effective batch / 256 (1e-4 at batch 16)")
    min_lr: float = option(0.0, "learning rate at the end of the poly decay")
    eval_batch_size: int = option(1, "unused: segmentation evaluates one image at a time (ADE20K's sizes differ)")
    poly_power: float = option(1.0, "power of the poly decay after warm-up")
    layer_decay: float = option(0.65, "layer-wise lr decay of the encoder (the heads take the full lr)")
    drop_path: float = option(0.1, "stochastic depth rate of the encoder")
    decoder_channels: int = option(512, "UperNet's channels (mmsegmentation's UPerHead default)")
    aux_weight: float = option(0.4, "weight of the auxiliary FCN head's loss")
    eval_every: int = option(10, "evaluate every this many epochs (and after the last)")

    def problems(self) -> list[str]:
        problems = super().problems() + at_least(self, 1, "eval_every", "decoder_channels")
        problems += at_least(self, 0, "aux_weight") + within(self, "drop_path", 0, 1)
        if not 0 < self.layer_decay <= 1:
            problems.append(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.poly_power <= 0:
            problems.append(f"poly_power must be positive, got {self.poly_power}")
        return problems

    def image_size(self, upstream_img_size: int | None = None) -> int:
        """The training crop: ``img_size``, else the set's (whatever size the upstream was pre-trained at)."""
        return self.img_size or default_image_size(self.dataset)

    def pass_minimum(self) -> tuple[int, str]:
        return 2, "UperNet's pyramid pooling (BatchNorm of a 1x1 pooled map)"

    def inert_fields(self) -> set[str]:
        return super().inert_fields() | {"eval_batch_size"}
