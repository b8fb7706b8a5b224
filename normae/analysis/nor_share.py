"""The NoR term's pull at initialisation: ``nor_grad_share`` per unit of lambda for one geometry.

``||grad(lam * L_nor)|| / ||grad(L_rec)||`` is linear in lambda (``L_nor`` does not depend on it), so a
geometry (model, image size, patch size, mask ratio, NoR variant, CNP source) has one number, its
share at lambda 1; a run's share is that times its lambda. A stand-in scale keeps the paper's pull
when its share matches the paper geometry's (the paper's model at 224 px, the row's patch size and
lambda) on the same images: the first Fashion-MNIST test images, resized (bicubic) to each
geometry's size. Weights and masks are seeded, so a measurement repeats to float precision on one
machine; its spread over the seeds (a factor of about 2 between two inits) is why several are averaged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import fmean

import torch

from normae.core.diagnostics import nor_grad_share
from normae.core.model import build_mae
from normae.data.registry import DATASETS
from normae.data.sources import FashionMNIST, find_fashion_mnist
from normae.data.transforms import eval_transform
from normae.errors import ConfigError
from normae.spec.checks import seed_problems
from normae.spec.geometry import Geometry

PROBE_IMAGES = 8
PROBE_SEEDS = (0, 1, 2)


def probe_images(img_size: int, count: int = PROBE_IMAGES, root=None) -> torch.Tensor:
    """The first ``count`` Fashion-MNIST test images at ``img_size`` px (bicubic, no crop), normalised."""
    info = DATASETS["fashion_mnist"]
    images = FashionMNIST(find_fashion_mnist(root), "test", eval_transform(img_size, info.mean, info.std, crop_pct=1.0))
    return torch.stack([images[i][0] for i in range(count)])


def share_at_init(geometry: Geometry, images: torch.Tensor, seed: int) -> float:
    """nor_grad_share at lambda 1 of a model initialised with ``seed``, masked with ``seed``'s noise."""
    torch.manual_seed(seed)
    model = build_mae(
        geometry.model,
        img_size=geometry.img_size,
        patch_size=geometry.patch_size,
        mask_ratio=geometry.mask_ratio,
        norm_pix_loss=True,
        method="nor_mae",
        lam=1.0,
        nor_variant=geometry.nor_variant,
        cnp=geometry.cnp,
    )
    tokens = (geometry.img_size // geometry.patch_size) ** 2
    noise = torch.rand(images.shape[0], tokens, generator=torch.Generator().manual_seed(1000 + seed))
    return float(nor_grad_share(model, model(images, noise=noise)))


@dataclass
class ShareMeasurement:
    geometry: Geometry
    share_per_lambda: float  # the mean over seeds
    values: list[float]
    images: int

    def record(self) -> dict:
        return {
            **asdict(self.geometry),
            "share_per_lambda": self.share_per_lambda,
            "values": " ".join(f"{v:.6g}" for v in self.values),
            "images": self.images,
        }


def measure_share(geometry: Geometry, count: int = PROBE_IMAGES, seeds=PROBE_SEEDS, root=None) -> ShareMeasurement:
    """The geometry's share per unit lambda: the mean over ``seeds`` on the first ``count`` test images."""
    problems = [] if count >= 1 else [f"--images must be at least 1, got {count}"]
    problems += [] if seeds else ["--probe-seeds must name at least one seed"]
    problems += [problem for seed in seeds for problem in seed_problems(seed, "--probe-seeds")]
    if problems:
        raise ConfigError("; ".join(problems))
    images = probe_images(geometry.img_size, count, root)
    values = [share_at_init(geometry, images, seed) for seed in seeds]
    return ShareMeasurement(geometry, fmean(values), values, count)
