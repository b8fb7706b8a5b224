"""Figure 3: cosine similarity of every image patch with its closest neighbour patch (CNP).

The paper (Sec. 3.1) defines the CNP on the input patches X_P: the one of the 8 neighbours in the
3x3 window with the highest cosine similarity. So this measures on pixels, flattened per patch,
with the window and border of ``normae.core.cnp`` (torus by default, as in training). The model itself
selects CNPs on embedded tokens (REFERENCE-FACTS.md); Figure 3 is about the images.

``pixels="raw"`` uses intensities in [0, 1]; ``"normalized"`` subtracts the data set's mean and
divides by its std, as the encoder's input is. A patch of all zeros has no direction: its
similarity is undefined, so it is counted (``undefined_patches``) and left out of the statistics.
A zero neighbour has similarity 0 with any patch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from normae.core.cnp import closest_neighbor_index
from normae.errors import ConfigError

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_EDGES = np.linspace(-1.0, 1.0, 101)
# Figure 3 / Sec. 3.1 of the paper: ImageNet-1K, 4096 images.
PAPER_FIGURE3 = {"mean": 0.83, "min": 0.07, "max": 0.999}


def image_patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, C*p*p), tokens row-major on the patch grid."""
    return F.unfold(images, kernel_size=patch_size, stride=patch_size).transpose(1, 2)


def closest_neighbor_cosine(patches: torch.Tensor, grid: tuple[int, int], wrap: bool = True) -> torch.Tensor:
    """(N, L) cosine similarity of each patch with its closest neighbour patch; NaN for all-zero patches."""
    source = closest_neighbor_index(patches, grid, wrap=wrap)
    partner = torch.gather(patches, 1, source.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
    cosine = (F.normalize(patches.double(), dim=-1) * F.normalize(partner.double(), dim=-1)).sum(-1)
    return cosine.masked_fill(patches.abs().amax(dim=-1) == 0, float("nan"))


def cnp_cosines(images: torch.Tensor, patch_size: int, wrap: bool = True, batch_size: int = 256) -> np.ndarray:
    """Flat array of every patch's closest-neighbour cosine over ``images`` (NaN where undefined)."""
    height, width = images.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ConfigError(f"patch size {patch_size} does not divide the image size {height} x {width}")
    grid = (height // patch_size, width // patch_size)
    chunks = [
        closest_neighbor_cosine(image_patches(images[i : i + batch_size], patch_size), grid, wrap).reshape(-1)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks).numpy()


def summarize_cosines(cosines: np.ndarray) -> dict:
    """Mean, std, min, max, quantiles and a histogram (edges over [-1, 1]) of the defined values."""
    defined = cosines[~np.isnan(cosines)]
    if defined.size == 0:
        raise ConfigError("every patch is all zeros: cosine similarity is undefined everywhere")
    counts, edges = np.histogram(np.clip(defined, -1.0, 1.0), bins=HISTOGRAM_EDGES)
    return {
        "patches": int(cosines.size),
        "undefined_patches": int(cosines.size - defined.size),
        "mean": float(defined.mean()),
        "std": float(defined.std()),
        "min": float(defined.min()),
        "max": float(defined.max()),
        "quantiles": {f"{q:g}": float(v) for q, v in zip(QUANTILES, np.quantile(defined, QUANTILES))},
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def cnp_similarity_stats(
    source: str,
    count: int,
    img_size: int,
    patch_size: int,
    pixels: str = "raw",
    wrap: bool = True,
    root=None,
    seed: int = 0,
) -> dict:
    """Figure 3's statistics for ``count`` images of ``source`` at ``img_size`` px and ``patch_size``."""
    from normae.data.analysis_images import analysis_images, pixel_stats

    if pixels not in ("raw", "normalized"):
        raise ConfigError(f"pixels must be raw or normalized, got {pixels!r}")
    if img_size < 1 or patch_size < 1:
        raise ConfigError(f"--img-size and --patch-size must be at least 1 pixel, got {img_size} and {patch_size}")
    if img_size % patch_size:
        raise ConfigError(f"patch size {patch_size} does not divide the image size {img_size} x {img_size}")
    images = analysis_images(source, count, img_size, root=root, split="train", seed=seed)
    if pixels == "normalized":
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in pixel_stats(source))
        images = (images - mean) / std
    return {
        "measured": {
            "what": "cosine similarity of each image patch (pixels) with its closest neighbour patch in its 3x3 window",
            "source": source,
            "images": count,
            "img_size": img_size,
            "patch_size": patch_size,
            "grid": [img_size // patch_size, img_size // patch_size],
            "pixels": pixels,
            "wrap": wrap,
            "seed": seed,
        },
        **summarize_cosines(cnp_cosines(images, patch_size, wrap=wrap)),
        "paper": PAPER_FIGURE3,
    }
