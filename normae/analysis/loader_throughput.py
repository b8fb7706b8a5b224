"""How many images per second a pre-training loader delivers, alone (no model), on an image folder.

``measure_loader("torchvision", root)`` times what the pre-training loop reads: the ImageFolder with
MAE's augmentation (PIL decode, RandomResizedCrop, flip, normalise) inside ``SeededSamples`` (each
sample's randomness seeded, its mask noise drawn), through a DataLoader of ``workers`` processes in the
loop's order, pinned and copied to the GPU as the loop copies them. ``measure_loader("dali", root)``
times ``normae.data.dali_loader.DaliLoader`` (nvJPEG on the GPU; its CPU operators without one).

The first ``warmup_batches`` batches are not timed (worker start-up, pipeline build, first decodes);
then the clock runs until at least ``images`` more images have arrived (on CUDA, after a
synchronisation, so that the last copy has landed). DataLoader workers start together and each makes
a whole batch, so batches arrive in waves of ``workers``: by default the warm-up is the first wave, and
the timed batches are rounded up to whole waves, so that the clock starts and stops on the same phase
of a wave. DALI's warm-up is its prefetch queue (two batches) and one more. A folder smaller than what
is read is read for several epochs, each epoch starting its workers (or building its DALI pipeline)
again, as training does: give a folder of more images than are read to time the steady state alone.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Generator
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets

from normae.data.dali_loader import DaliLoader, epoch_seeds, image_folder
from normae.data.pretrain import epoch_order
from normae.data.registry import DATASETS
from normae.data.sources import load_image
from normae.data.transforms import pretrain_transform
from normae.errors import ConfigError
from normae.spec import LOADERS
from normae.training.sampling import SeededSamples

DALI_WARMUP_BATCHES = 3  # DALI's prefetch queue (2 batches) and the first one


def library_version(kind: str) -> str:
    """The decoding library's name and version: torchvision (with PIL's), or DALI's."""
    if kind == "dali":
        from nvidia import dali

        return f"nvidia-dali {dali.__version__}"
    import PIL
    import torchvision

    return f"torchvision {torchvision.__version__}, pillow {PIL.__version__}"


def default_workers() -> int:
    """This process's CPUs, at most 16: the data-loading processes (or DALI threads) a GPU job would give."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(16, cpus))


def _torchvision_epochs(
    root, img_size, batch_size, patch_size, workers, seed, device: torch.device
) -> Generator[torch.Tensor, None, None]:
    """The pre-training loop's batches (images on ``device``), epoch after epoch."""
    facts = DATASETS["imagenet1k"]
    folder = datasets.ImageFolder(
        image_folder(root), transform=pretrain_transform(img_size, facts.mean, facts.std), loader=load_image
    )
    samples = SeededSamples(folder, seed, noise_length=(img_size // patch_size) ** 2)
    for epoch in itertools.count():
        order = epoch_order(len(samples), epoch, seed)
        loader = DataLoader(
            samples,
            batch_size=batch_size,
            sampler=[(epoch, index) for index in order],
            num_workers=workers,
            drop_last=True,
            pin_memory=device.type == "cuda",
        )
        for batch in loader:
            yield [item.to(device, non_blocking=True) for item in batch][0]


def _dali_epochs(
    root, img_size, batch_size, workers, seed, device: torch.device
) -> Generator[torch.Tensor, None, None]:
    """DALI's batches (images on ``device``) in the loop's order, epoch after epoch, each epoch a new pipeline."""
    loader = DaliLoader.from_folder(
        root,
        img_size,
        batch_size,
        device="gpu" if device.type == "cuda" else "cpu",
        device_id=device.index or 0,
        num_threads=max(1, workers),
    )
    for epoch in itertools.count():
        for images, _ in loader.batches(epoch_order(len(loader.paths), epoch, seed), epoch_seeds(seed, epoch)):
            yield images


def measure_loader(
    kind: str,
    root: str | Path,
    img_size: int = 224,
    batch_size: int = 256,
    images: int = 512,
    warmup_batches: int | None = None,
    workers: int | None = None,
    patch_size: int = 16,
    seed: int = 0,
    device: str | None = None,
) -> dict:
    """Images per second of loader ``kind`` (torchvision or dali) over ``images`` images after the warm-up.

    ``workers``: DataLoader processes (0: in this process) or DALI threads (default: ``default_workers()``).
    """
    if kind not in LOADERS:
        raise ConfigError(f"loader must be one of {', '.join(LOADERS)}, got {kind!r}")
    if images < 1 or batch_size < 1 or (warmup_batches or 0) < 0:
        raise ConfigError("images and batch_size must be at least 1, warmup_batches at least 0")
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    workers = default_workers() if workers is None else workers
    wave = max(1, workers) if kind == "torchvision" else 1
    if warmup_batches is None:
        warmup_batches = wave if kind == "torchvision" else DALI_WARMUP_BATCHES
    timed_batches = -(-images // batch_size)
    timed_batches = -(-timed_batches // wave) * wave
    if kind == "torchvision":
        batches = _torchvision_epochs(root, img_size, batch_size, patch_size, workers, seed, target)
    else:
        batches = _dali_epochs(root, img_size, batch_size, workers, seed, target)

    def settled() -> float:
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        return time.perf_counter()

    started, seen = (settled() if warmup_batches == 0 else 0.0), 0
    try:
        for number, batch in enumerate(batches, start=1):
            if number <= warmup_batches:
                if number == warmup_batches:
                    started = settled()
                continue
            seen += len(batch)
            if number == warmup_batches + timed_batches:
                break
        seconds = settled() - started
        shape = list(batch.shape)
    finally:
        batches.close()  # the DataLoader's workers (or DALI's pipeline) end here
    return {
        "loader": kind,
        "data": str(image_folder(root)),
        "decode_device": "gpu" if kind == "dali" and target.type == "cuda" else "cpu",
        "device": str(target),
        "device_name": torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu",
        "library": library_version(kind),
        "img_size": img_size,
        "batch_size": batch_size,
        "workers": workers,
        "warmup_batches": warmup_batches,
        "measured_batches": timed_batches,
        "measured_images": seen,
        "seconds": seconds,
        "images_per_s": seen / seconds,
        "batch_shape": shape,
    }
