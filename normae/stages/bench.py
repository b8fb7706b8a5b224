"""The bench stage: the cost claim measured in a run folder, on the device of the job that runs it.

The workflow launches it like any run, so at the paper scale it runs in a GPU job, not on the login
node; its summary.json says which device and precision measured it, and whether the images came
through the real pre-training loader or were synthetic. With ``loader`` it also times that loader
alone on ``data_root``'s images (``loader_throughput``: images/s, normae.analysis.loader_throughput).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from normae.analysis.bench import run_bench
from normae.analysis.loader_throughput import measure_loader
from normae.data.pretrain import build_pretrain_dataset
from normae.spec import BenchSpec
from normae.stages.common import Run, Stage, run_stage
from normae.training.signals import StopSignals


def loader_images(spec: BenchSpec) -> torch.Tensor:
    """The first ``batch_size`` images of the set through its pre-training loader (augmentation included)."""
    dataset = build_pretrain_dataset(spec.dataset, root=spec.data_root, img_size=spec.img_size)
    loader = DataLoader(dataset, batch_size=spec.batch_size, num_workers=spec.num_workers, shuffle=False)
    images = next(iter(loader))[0]
    if len(images) < spec.batch_size:  # a set smaller than one batch: its images repeated
        images = images.repeat((spec.batch_size + len(images) - 1) // len(images), 1, 1, 1)[: spec.batch_size]
    return images


def measure(spec: BenchSpec, device: str | None, batch=None, models: bool = True, **loader_options) -> dict:
    """What a bench spec asks for, on ``device``: the interleaved model measurement (unless not ``models``; on
    ``batch``, real images, else synthetic ones) and, with ``spec.loader``, that loader alone
    (``loader_options``: measure_loader's images, warm-up batches, workers)."""
    result = {}
    if models:
        result = run_bench(spec, device, images=batch)
    if spec.loader is not None:
        options = {"workers": spec.num_workers, **loader_options}
        result["loader_throughput"] = measure_loader(
            spec.loader,
            spec.data_root,
            img_size=spec.img_size,
            batch_size=spec.batch_size,
            patch_size=spec.patch_size,
            seed=spec.seed,
            device=device,
            **options,
        )
    return result


class Bench(Stage):
    """One measurement, nothing trained."""

    spec: BenchSpec

    def run(self, run: Run) -> dict:
        spec = self.spec
        images = loader_images(spec) if spec.dataset else None
        result = measure(spec, str(run.device), batch=images)
        result["images"] = f"{spec.dataset} through its pre-training loader" if spec.dataset else "synthetic"
        return {"final": {"nor_over_mae_time": result["nor_over_mae_time"]}, **result}


def run_bench_stage(spec: BenchSpec, run_dir: str | Path, resume: bool = False, signals: StopSignals | None = None):
    """Measure into ``run_dir``; returns the summary. Nothing to resume: a stopped bench measures again."""
    return run_stage(Bench(spec), run_dir, resume, signals)
