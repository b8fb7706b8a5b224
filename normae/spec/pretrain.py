"""The pre-training run's spec: MAE, NoR-MAE, SupMAE, DMAE and their NoR variants (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from normae.data.registry import PRETRAIN_DATASETS, short_name
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
from normae.spec.checks import at_least, authors_code_problems, common_problems, masking_problems
from normae.spec.vocabulary import (
    DISTILLED_METHODS,
    NOR_METHODS,
    SUPERVISED_METHODS,
    Amp,
    CnpMode,
    Loader,
    Method,
    NorVariant,
)

# The paper's lambda, the weight of the NoR loss (Sec. 4): the default of every spec and model that has one.
PAPER_LAMBDA = 5e-5

# The pre-training sets read from image files (ImageNet folders): the ones the dali loader can read.
DALI_DATASETS = ("imagenet1k", "imagenet100")


def pass_minimum(method: str, sup_hidden: int) -> tuple[int, str]:
    """(the fewest images per forward pass ``method`` trains on, why): SupMAE's head normalises its hidden
    layer with BatchNorm over the pass (none when ``sup_hidden`` is 0: a linear head)."""
    if method in SUPERVISED_METHODS and sup_hidden > 0:
        return 2, f"{method}'s BatchNorm head (sup_hidden {sup_hidden})"
    return 1, "the model"


@dataclass
class PretrainSpec(SpecBase):
    """One pre-training run. Defaults are the paper's recipe (REFERENCE-FACTS.md), on Fashion-MNIST."""

    dataset: str = option("fashion_mnist", "pre-training set: fashion_mnist, imagenet1k, imagenet100 or generated")
    data_root: str | None = option(None, "data folder (default: looked up; see docs/data.md)")
    train_samples: int | None = option(None, "use this many images (a fixed seeded subset) instead of the whole set")
    model: str = option("vit_tiny", "model size: vit_micro, vit_mini (CPU scale), vit_tiny, vit_small, vit_base")
    img_size: int | None = option(
        None, "input size in pixels (default: the data set's native size, 28 for Fashion-MNIST)"
    )
    patch_size: int = option(
        2, "patch size in pixels; must divide the image size (2 at 28 px = 16 at 224 px: 14x14 tokens)"
    )
    method: Method = option("nor_mae", "mae or nor_mae")
    lam: float = option(PAPER_LAMBDA, "lambda, weight of the NoR loss (nor_mae only)")
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
    num_workers: int = option(2, "data-loading worker processes (with loader dali: its threads, 0 = 4)")
    loader: Loader = option(
        "torchvision",
        "image decoding and cropping: torchvision (PIL, each sample seeded: exact resume anywhere) or dali "
        "(NVIDIA DALI: nvJPEG decode and crops on the GPU; ImageNet folders only; other crops than torchvision's, "
        "exact resume at epoch boundaries; needs pip install nvidia-dali-cuda120)",
    )
    compile: bool = option(False, "torch.compile the model (same numbers within float rounding; not in the run id)")
    checkpoint_minutes: float = option(
        30.0, "also checkpoint every this many minutes (0: only per epoch and on signals)"
    )
    log_every: int = option(20, "write a metrics line every this many optimiser steps")

    stage = "pretrain"

    @property
    def image_size(self) -> int:
        """The input size the run trains at: ``img_size``, or the set's native size where it is None."""
        return self.img_size or default_image_size(self.dataset)

    def problems(self) -> list[str]:
        # method, nor_variant, cnp and the other Literal fields: by their type (SpecBase.__post_init__)
        problems = common_problems(self)
        if self.dataset not in PRETRAIN_DATASETS:
            problems.append(f"dataset must be one of {', '.join(PRETRAIN_DATASETS)}, got {self.dataset!r}")
        elif self.method in NOR_METHODS:
            problems += authors_code_problems(self.cnp, self.cnp_wrap, self.image_size, self.patch_size)
        problems += at_least(self, 0, "lam", "sup_weight", "sup_hidden", "alpha")
        problems += masking_problems(self) + batch_problems(self)
        if self.sup_temperature <= 0:
            problems.append(f"sup_temperature must be positive, got {self.sup_temperature}")
        if not 0 < self.distill_depth <= 1:
            problems.append(f"distill_depth must be in (0, 1], got {self.distill_depth}")
        if self.loader == "dali" and self.dataset not in DALI_DATASETS:
            problems.append(
                f"loader dali reads image folders ({', '.join(DALI_DATASETS)}), not {self.dataset}: "
                "use loader torchvision"
            )
        if self.method in DISTILLED_METHODS and not self.teacher:
            problems.append(f"method {self.method} needs a teacher: a {{'model': ...}} MAE checkpoint or a run folder")
        return problems

    def pass_minimum(self) -> tuple[int, str]:
        return pass_minimum(self.method, self.sup_hidden)

    def inert_fields(self) -> set[str]:
        inert = super().inert_fields()
        if self.method not in SUPERVISED_METHODS:
            inert |= {"sup_weight", "sup_temperature", "sup_hidden"}
        if self.method not in DISTILLED_METHODS:
            inert |= {"teacher", "teacher_model", "alpha", "distill_depth"}
        if self.loader == "torchvision":  # the default: run ids from before the option are unchanged
            inert.add("loader")
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
        parts += [f"mr{self.mask_ratio:g}", f"ep{self.epochs}", *batch_part(self), *["dali"] * (self.loader == "dali")]
        parts.append(f"s{self.seed}")
        return "-".join(parts) + "-" + self.digest()[:8]
