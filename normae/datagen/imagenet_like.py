"""A generated ImageNet-like JPEG folder for measuring data loaders where no ImageNet is at hand.

``write_imagenet_like(out, images)`` writes ``<out>/train/<class>/<class>_<n>.JPEG``: the layout of an
ImageNet-1K training split (so ``--data <out>`` reads like an ImageNet root), in ImageNet's common
picture sizes (500 x 375 most often, portrait and square ones too) at JPEG quality 90. Each picture is
a smooth random colour field with mid-scale structure and per-pixel noise: the noise keeps the
entropy-coded data near a photograph's (about 90 KB a picture; ImageNet's average is about 110 KB), so
decoding costs what it costs on the real data; flat synthetic colours would decode several times faster.

Each picture depends on (seed, index) alone, so the folder is the same whatever the number of worker
processes that write it. A manifest (``bench_images.json``) records what was written; a folder that
already holds the same request is left as it is.

Torch-free: numpy and PIL.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

# The manifest's name from when this module was data/bench_images.py: folders written then are still recognised.
MANIFEST = "bench_images.json"
JPEG_QUALITY = 90
# ImageNet's common (width, height) and how often each is drawn: landscape 4:3 dominates.
SIZES = ((500, 375), (500, 333), (375, 500), (500, 500), (500, 400), (333, 500), (400, 300), (640, 480))
SIZE_WEIGHTS = (0.45, 0.15, 0.12, 0.08, 0.06, 0.06, 0.04, 0.04)
NOISE_SIGMA = 16.0  # per-pixel noise, in 0-255 levels


def class_names(classes: int) -> list[str]:
    """wnid-like folder names: ``n00000000``, ``n00000001``, ..."""
    return [f"n{index:08d}" for index in range(classes)]


def _coarse_field(coarse: np.ndarray, width: int, height: int) -> np.ndarray:
    """``coarse`` (h, w, 3) floats resized bicubically to (height, width, 3), channel by channel."""
    return np.stack(
        [
            np.asarray(Image.fromarray(coarse[..., c]).resize((width, height), Image.Resampling.BICUBIC))
            for c in range(3)
        ],
        axis=-1,
    )


def picture(seed: int, index: int) -> tuple[tuple[int, int], Image.Image]:
    """The ``index``-th picture of ``seed``: its (width, height) and the image."""
    rng = np.random.default_rng([seed, index])
    width, height = SIZES[int(rng.choice(len(SIZES), p=SIZE_WEIGHTS))]
    coarse = rng.uniform(0, 255, (int(rng.integers(2, 5)), int(rng.integers(2, 5)), 3)).astype(np.float32)
    fine = rng.uniform(-60, 60, (int(rng.integers(8, 24)), int(rng.integers(8, 24)), 3)).astype(np.float32)
    texture = rng.uniform(-30, 30, (int(rng.integers(40, 90)), int(rng.integers(40, 90)), 3)).astype(np.float32)
    pixels = sum(_coarse_field(layer, width, height) for layer in (coarse, fine, texture))
    pixels += rng.normal(0.0, NOISE_SIGMA, (height, width, 3)).astype(np.float32)
    return (width, height), Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def _write_one(job: tuple[int, int, str]) -> int:
    """Write picture ``index`` of ``seed`` to ``path``; returns its size in bytes."""
    seed, index, path = job
    _, image = picture(seed, index)
    image.save(path, format="JPEG", quality=JPEG_QUALITY)
    return os.path.getsize(path)


def image_paths(out: Path, images: int, classes: int) -> list[Path]:
    """Where each picture goes: round-robin over the classes, numbered within its class."""
    names = class_names(classes)
    return [out / "train" / names[i % classes] / f"{names[i % classes]}_{i // classes}.JPEG" for i in range(images)]


def write_imagenet_like(
    out: str | Path, images: int, classes: int = 10, seed: int = 0, workers: int | None = None
) -> dict:
    """Write ``images`` pictures over ``classes`` class folders under ``out/train``; returns the manifest.

    ``workers``: processes that encode (default: this process's CPUs, at most 16; 1 for a few pictures).
    """
    if images < 1 or classes < 1:
        raise ValueError(f"images and classes must be at least 1, got {images} and {classes}")
    out = Path(out)
    request = {"images": images, "classes": classes, "seed": seed, "quality": JPEG_QUALITY}
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if {key: manifest.get(key) for key in request} == request:
            return manifest
    paths = image_paths(out, images, classes)
    for folder in {path.parent for path in paths}:
        folder.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, index, str(path)) for index, path in enumerate(paths)]
    if workers is None:
        workers = 1 if images < 64 else min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            sizes = list(pool.map(_write_one, jobs, chunksize=16))
    else:
        sizes = [_write_one(job) for job in jobs]
    manifest = {**request, "train_folder": str(out / "train"), "mean_bytes": sum(sizes) / len(sizes)}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
