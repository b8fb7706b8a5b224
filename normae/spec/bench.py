"""The cost measurement's spec: MAE vs NoR-MAE (and the other methods) step time and memory (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from normae.data.registry import PRETRAIN_DATASETS, short_name
from normae.spec.base import SpecBase, option
from normae.spec.checks import at_least, authors_code_problems
from normae.spec.pretrain import PAPER_LAMBDA
from normae.spec.vocabulary import METHODS, NOR_METHODS, Amp, CnpMode, Loader


@dataclass
class BenchSpec(SpecBase):
    """The cost claim's measurement as a run: MAE vs NoR-MAE step time and peak memory, interleaved in
    one process (normae.analysis.bench), on whatever device the job gets (a GPU job at the paper scale)."""

    stage = "bench"
    # The help texts are what `normae bench --help` shows: its options are these fields (normae.cli.bench).
    model: str = option("vit_tiny", "model size")
    img_size: int = option(224, "image size in pixels")
    patch_size: int = option(16, "patch size in pixels")
    batch_size: int = option(256, "images per step (and per loader batch)")
    steps: int = option(50, "measured steps per method")
    warmup: int = option(10, "unmeasured steps per method first")
    lam: float = option(PAPER_LAMBDA, "NoR lambda")
    cnp: CnpMode = option("paper", "CNP mode")
    methods: str = option("mae,nor_mae,sup_mae,dmae", "comma-separated, interleaved (e.g. mae,nor_mae)")
    teacher_model: str = option("vit_base", "DMAE's teacher size (random weights: cost only)")
    amp: Amp = option("auto", "mixed precision (auto: bf16 on CUDA)")
    dataset: str | None = option(
        None, "read the images through this pre-training set's loader (None: synthetic images, said so in the result)"
    )
    data_root: str | None = option(None, "the data set's folder")
    num_workers: int = option(2, "data-loading worker processes (with a dataset)")
    seed: int = option(0, "random seed (weights, images, masks)")
    compile: bool = option(
        False,
        "torch.compile each method's model (one untimed step compiles it); the JSON says compile: true",
    )
    loader: Loader | None = option(
        None,
        "time this pre-training loader on --data (a spec's data_root): torchvision (PIL, DataLoader workers; the "
        "default with --data) or dali (nvJPEG on the GPU; pip install nvidia-dali-cuda120)",
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
