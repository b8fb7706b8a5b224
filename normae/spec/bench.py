"""The cost measurement's spec: MAE vs NoR-MAE (and the other methods) step time and memory (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from normae.data.registry import PRETRAIN_DATASETS, short_name
from normae.spec.base import SpecBase, option
from normae.spec.checks import at_least, authors_code_problems
from normae.spec.vocabulary import METHODS, NOR_METHODS, Amp, CnpMode, Loader


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
    compile: bool = option(False, "torch.compile each method's model (its compilation is not timed)")
    loader: Loader | None = option(
        None, "also time this loader alone on data_root's images (images/s): torchvision or dali (None: no loader)"
    )

    # What the bench measures is time: compiling changes it, so for the bench ``compile`` is part of the
    # result (unlike a training run's), and in the digest when set. Unset, it and ``loader`` are inert,
    # so the run ids of benches specified before they existed stay as they were.
    cosmetic_fields = SpecBase.cosmetic_fields - {"compile"}

    def inert_fields(self) -> set[str]:
        inert = super().inert_fields()
        if not self.compile:
            inert.add("compile")
        if self.loader is None:
            inert.add("loader")
        return inert

    def problems(self) -> list[str]:
        problems = at_least(self, 1, "img_size", "patch_size", "batch_size", "steps") + at_least(self, 0, "warmup")
        if self.dataset is not None and self.dataset not in PRETRAIN_DATASETS:
            problems.append(f"dataset must be one of {', '.join(PRETRAIN_DATASETS)} or null, got {self.dataset!r}")
        if any(method in NOR_METHODS for method in self.methods.split(",")) and self.patch_size >= 1:
            problems += authors_code_problems(self.cnp, True, self.img_size, self.patch_size)
        unknown = [method for method in self.methods.split(",") if method not in METHODS]
        if unknown or "mae" not in self.methods.split(","):
            problems.append(f"methods must list mae and others of {', '.join(METHODS)}, got {self.methods!r}")
        if self.loader is not None and not self.data_root:
            problems.append(f"loader {self.loader} needs data_root, the image folder it reads")
        if self.img_size >= 1 and self.patch_size >= 1 and self.img_size % self.patch_size:
            problems.append(f"patch_size {self.patch_size} does not divide img_size {self.img_size}")
        return problems

    def run_id(self) -> str:
        images = short_name(self.dataset) if self.dataset else "synthetic"
        parts = ["bench", self.model, f"p{self.patch_size}", f"{self.img_size}px", f"b{self.batch_size}", images]
        parts += ["compiled"] * self.compile + [f"loader-{self.loader}"] * (self.loader is not None)
        return "-".join(parts) + "-" + self.digest()[:8]
