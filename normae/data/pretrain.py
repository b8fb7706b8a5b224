"""The pre-training sets (normae.data.registry.PRETRAIN_DATASETS) with MAE's augmentation, and the order
in which a process reads them in an epoch (``epoch_order``: the one definition, for every loader)."""

from torch.utils.data import Dataset, DistributedSampler

from normae.data.registry import DATASETS, GENERATED_PRETRAIN_SAMPLES, PRETRAIN_DATASETS
from normae.data.sources import (
    IMAGENET_HELP,
    FashionMNIST,
    GeneratedImages,
    ImageNet100,
    find_fashion_mnist,
    imagenet1k,
)
from normae.data.transforms import pretrain_transform
from normae.errors import ConfigError, DataNotFoundError


def build_pretrain_dataset(
    name, root=None, img_size=None, split="train", generated_samples=GENERATED_PRETRAIN_SAMPLES
) -> Dataset:
    """A data set with the MAE pre-training augmentation; img_size=None keeps the set's native size."""
    if name not in PRETRAIN_DATASETS:
        raise ConfigError(f"unknown data set {name!r}; known: {', '.join(PRETRAIN_DATASETS)}")
    info = DATASETS[name]
    img_size = img_size or info.img_size
    transform = pretrain_transform(img_size, info.mean, info.std)
    if name == "fashion_mnist":
        return FashionMNIST(find_fashion_mnist(root), split, transform)
    if name == "generated":
        return GeneratedImages(
            generated_samples, img_size, info.num_classes, seed=0 if split == "train" else 1, transform=transform
        )
    if root is None:
        raise DataNotFoundError(f"{name} needs root, the ImageNet-1K folder.\n{IMAGENET_HELP}")
    if name == "imagenet100":
        return ImageNet100(root, split, transform)
    return imagenet1k(root, split, transform)


def epoch_order(count: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """This process's sample indices for ``epoch``: DistributedSampler's permutation of (seed, epoch), every
    ``world_size``-th from ``rank``, the ragged tail dropped (also for one process). The pre-training loop
    (``normae.training.sampling.epoch_indices`` is this function) and the DALI loader read in this order."""
    sampler = DistributedSampler(
        range(count), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    return list(sampler)
