"""Un-augmented images for the analyses (Figure 3 CNP similarity, Figures 7-8 PCA).

Every source yields RGB tensors in [0, 1], shape (N, 3, S, S): a fixed, seeded choice of images,
resized (short side) and centre-cropped to S, never randomly cropped or flipped, so an analysis
sees the same pixels every time.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision import transforms

from normae.data.registry import ANALYSIS_SOURCES, DATASETS, GENERATED_PRETRAIN_SAMPLES
from normae.data.sources import (
    FashionMNIST,
    GeneratedImages,
    ImageNet100,
    find_fashion_mnist,
    imagenet1k,
)
from normae.errors import ConfigError, DataNotFoundError

SOURCES = ANALYSIS_SOURCES  # normae.data.registry.AnalysisSource


def pixel_stats(source: str) -> tuple[tuple, tuple]:
    """(mean, std) that the models trained on ``source`` normalise with (sklearn_samples: ImageNet's)."""
    if source not in DATASETS:
        raise ConfigError(f"unknown data set {source!r}; image sources: {SOURCES}")
    return DATASETS[source].mean, DATASETS[source].std


def sklearn_sample_crops(img_size: int) -> torch.Tensor:
    """All non-overlapping img_size x img_size crops of scikit-learn's sample photographs, row by row."""
    from sklearn.datasets import load_sample_images

    crops = []
    for photo in load_sample_images().images:
        rows, cols = photo.shape[0] // img_size, photo.shape[1] // img_size
        if rows == 0 or cols == 0:
            raise ConfigError(
                f"img_size {img_size} is larger than a sample photograph ({photo.shape[0]} x {photo.shape[1]})"
            )
        tiles = photo[: rows * img_size, : cols * img_size].reshape(rows, img_size, cols, img_size, 3)
        crops.append(tiles.transpose(0, 2, 4, 1, 3).reshape(rows * cols, 3, img_size, img_size))
    return torch.from_numpy(np.concatenate(crops)).float() / 255


def _dataset(source: str, img_size: int, root, split: str):
    """The source as a torch data set of (tensor in [0, 1], label) with a deterministic resize + centre crop."""
    native = DATASETS[source].img_size
    steps = (
        []
        if source == "generated" or (source == "fashion_mnist" and img_size == native)
        else [
            transforms.Resize(img_size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(img_size),
        ]
    )
    transform = transforms.Compose([*steps, transforms.ToTensor()])
    if source == "fashion_mnist":
        return FashionMNIST(find_fashion_mnist(root), "train" if split == "train" else "test", transform)
    if source == "generated":
        return GeneratedImages(
            GENERATED_PRETRAIN_SAMPLES, img_size, seed=0 if split == "train" else 1, transform=transform
        )
    if root is None:
        raise DataNotFoundError(f"{source} needs --data-root, the ImageNet-1K folder")
    folder_split = "train" if split == "train" else "val"
    build = ImageNet100 if source == "imagenet100" else imagenet1k
    return build(root, folder_split, transform)


def analysis_images(
    source: str, count: int, img_size: int, root=None, split: str = "eval", seed: int = 0
) -> torch.Tensor:
    """``count`` images of ``source`` (a seeded choice without repetition), (count, 3, img_size, img_size) in [0, 1].

    ``split`` is ``train`` or ``eval`` (the set's evaluation split); sklearn_samples has no split.
    Asking for more images than the source holds is an error naming how many it has.
    """
    if source not in SOURCES:
        raise ConfigError(f"unknown image source {source!r}; choose one of {SOURCES}")
    if count < 1:
        raise ConfigError(f"need at least one image, got {count}")
    if source == "sklearn_samples":
        pool = sklearn_sample_crops(img_size)
        total = len(pool)
    else:
        dataset = _dataset(source, img_size, root, split)
        total = len(dataset)
    if count > total:
        raise ConfigError(f"{source} at {img_size} px holds {total} images, fewer than the {count} asked for")
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))
    if source == "sklearn_samples":
        return pool[torch.from_numpy(chosen)]
    return torch.stack([dataset[int(i)][0] for i in chosen])
