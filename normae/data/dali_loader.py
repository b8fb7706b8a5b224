"""An NVIDIA DALI loader for ImageNet-style folders (``<root>/<class>/*.JPEG``) with MAE's augmentation.

Pipeline: ``fn.readers.file`` reads the files in an order we give it; ``fn.decoders.image_random_crop``
decodes them (``device="mixed"``: nvJPEG, on the GPU's hardware JPEG decoder where it has one) straight
into a random crop of MAE's RandomResizedCrop distribution (area 0.2-1 of the picture, aspect ratio
3/4-4/3, ten tries); ``fn.resize`` takes the crop to ``img_size`` (bicubic, antialiased);
``fn.crop_mirror_normalize`` flips half of them and normalises with ImageNet's mean and std into NCHW
float. ``device="cpu"`` runs the same operators on the CPU (the tests use it; no GPU needed).

What holds for exact resume. The torchvision path seeds every sample's augmentation by (seed, epoch,
index) (``normae.training.sampling``), so any stop, anywhere, resumes exactly. DALI's operators draw from
their own generators, advanced sample by sample inside the pipeline, so that rule cannot hold. Here:

- The order of the files is ours: ``epoch_order`` is the pre-training loop's order (the same
  DistributedSampler permutation of (seed, epoch), this process's share of it), truncated to whole
  batches. It is exact everywhere, also when resuming in the middle of an epoch (``start_batch``).
- The crops and flips come from a pipeline built afresh for every epoch with seeds derived from
  (seed, epoch) alone (``epoch_seeds``). A run resumed at an epoch boundary sees the same crops and
  flips as one that never stopped, given the same per-process batch size, number of processes and
  DALI version; one resumed inside an epoch sees the same images in the same order with other crops.
- The mask noise is not DALI's: it stays seeded per (seed, epoch, index) as in the torchvision path.

DALI is imported when a pipeline is built; without it, a ``ConfigError`` names the package to install.
This module imports torch (the sampler, the tensors DALI hands over), never ``training`` or ``core``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DistributedSampler

from normae.data.registry import DATASETS
from normae.errors import ConfigError, DataNotFoundError

DALI_INSTALL = "pip install nvidia-dali-cuda120 (or pip install 'normae[dali]')"
# What torchvision's ImageFolder reads (its IMG_EXTENSIONS), compared lower-case as it does.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# MAE's RandomResizedCrop (normae.data.transforms.pretrain_transform) and timm/torchvision's tries.
CROP_AREA = (0.2, 1.0)
CROP_ASPECT_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10


def import_dali():
    """``nvidia.dali`` (fn, types, pipeline_def, the PyTorch iterator), or a one-line error naming the fix."""
    try:
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    except ImportError as error:
        raise ConfigError(f"the dali loader needs NVIDIA DALI ({error}): {DALI_INSTALL}") from None
    return fn, types, pipeline_def, DALIGenericIterator, LastBatchPolicy


def image_folder(root: str | Path) -> Path:
    """The folder of class folders: ``root/train`` for an ImageNet root, else ``root`` itself."""
    root = Path(root)
    return root / "train" if (root / "train").is_dir() else root


def list_images(folder: str | Path) -> tuple[list[str], list[int]]:
    """(paths, labels) of every image under ``folder/<class>/``, in torchvision ImageFolder's order
    (classes sorted, files sorted within each), labels numbering the sorted classes from 0."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"no image folder {folder}: give a folder of class folders (or an ImageNet root)")
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        for directory, _, files in sorted(os.walk(folder / name, followlinks=True)):
            for file in sorted(files):
                if file.lower().endswith(IMAGE_SUFFIXES):
                    paths.append(os.path.join(directory, file))
                    labels.append(label)
    if not paths:
        raise DataNotFoundError(f"{folder} holds no images in class folders (<class>/*.JPEG)")
    return paths, labels


def epoch_order(count: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """This process's file indices for ``epoch``: the pre-training loop's order (DistributedSampler's
    permutation of (seed, epoch), every ``world_size``-th from ``rank``, the ragged tail dropped)."""
    sampler = DistributedSampler(
        range(count), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    return list(sampler)


def epoch_seeds(seed: int, epoch: int) -> dict[str, int]:
    """The seeds of the epoch's random operators (crop window, flip), from (seed, epoch) alone, below 2**31."""
    seeds = {}
    for operator in ("crop", "flip"):
        digest = hashlib.sha256(f"normae-dali:{seed}:{epoch}:{operator}".encode()).digest()
        seeds[operator] = int.from_bytes(digest[:4], "little") % 2**31
    return seeds


def build_pipeline(
    paths: list[str],
    labels: list[int],
    img_size: int,
    batch_size: int,
    seeds: dict[str, int],
    device: str = "gpu",
    device_id: int | None = 0,
    num_threads: int = 4,
    dataset: str = "imagenet1k",
):
    """A built DALI pipeline over ``paths`` in this order: outputs ``images`` (N, 3, img_size, img_size)
    float, normalised with ``dataset``'s mean and std, and ``labels``. ``device``: gpu (nvJPEG) or cpu."""
    fn, types, pipeline_def, _, _ = import_dali()
    if device not in ("gpu", "cpu"):
        raise ConfigError(f"DALI device must be gpu or cpu, got {device!r}")
    facts = DATASETS[dataset]

    @pipeline_def
    def mae_pretrain_pipeline():
        encoded, label = fn.readers.file(files=paths, labels=labels, random_shuffle=False, name="Reader")
        images = fn.decoders.image_random_crop(
            encoded,
            device="mixed" if device == "gpu" else "cpu",
            output_type=types.RGB,
            random_area=list(CROP_AREA),
            random_aspect_ratio=list(CROP_ASPECT_RATIO),
            num_attempts=CROP_ATTEMPTS,
            seed=seeds["crop"],
        )
        images = fn.resize(images, resize_x=img_size, resize_y=img_size, interp_type=types.INTERP_CUBIC)
        images = fn.crop_mirror_normalize(
            images,
            dtype=types.FLOAT,
            output_layout="CHW",
            mean=[255 * value for value in facts.mean],
            std=[255 * value for value in facts.std],
            mirror=fn.random.coin_flip(probability=0.5, seed=seeds["flip"]),
        )
        return images, label

    pipeline = mae_pretrain_pipeline(
        batch_size=batch_size,
        num_threads=num_threads,
        device_id=device_id if device == "gpu" else None,
        seed=seeds["crop"],
    )
    pipeline.build()
    return pipeline


class DaliLoader:
    """Epochs of (images, labels) batches through DALI, in the pre-training loop's file order.

    ``epoch(e, start_batch)`` yields this process's whole batches of epoch ``e`` from ``start_batch`` on,
    images (N, 3, img_size, img_size) float32 on the GPU (``device="gpu"``) or the CPU, labels int64.
    """

    def __init__(
        self,
        root: str | Path,
        img_size: int,
        batch_size: int,
        seed: int = 0,
        device: str = "gpu",
        device_id: int = 0,
        num_threads: int = 4,
        rank: int = 0,
        world_size: int = 1,
    ):
        import_dali()  # fail now, naming the fix, rather than at the first epoch
        self.paths, self.labels = list_images(image_folder(root))
        self.img_size, self.batch_size, self.seed = img_size, batch_size, seed
        self.device, self.device_id, self.num_threads = device, device_id, num_threads
        self.rank, self.world_size = rank, world_size
        per_process = len(self.paths) // world_size
        if per_process < batch_size:
            raise ConfigError(
                f"{len(self.paths)} images cannot fill one batch of {batch_size} x {world_size} processes"
            )

    def __len__(self) -> int:
        """Batches per epoch for this process."""
        return (len(self.paths) // self.world_size) // self.batch_size

    def epoch_files(self, epoch: int, start_batch: int = 0) -> list[int]:
        """The file indices the epoch reads from ``start_batch`` on, whole batches only."""
        order = epoch_order(len(self.paths), epoch, self.seed, self.rank, self.world_size)
        return order[start_batch * self.batch_size : len(self) * self.batch_size]

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        _, _, _, DALIGenericIterator, LastBatchPolicy = import_dali()
        files = self.epoch_files(epoch, start_batch)
        if not files:
            return
        pipeline = build_pipeline(
            [self.paths[i] for i in files],
            [self.labels[i] for i in files],
            self.img_size,
            self.batch_size,
            epoch_seeds(self.seed, epoch),
            self.device,
            self.device_id,
            self.num_threads,
        )
        batches = DALIGenericIterator(
            pipeline, ["images", "labels"], reader_name="Reader", last_batch_policy=LastBatchPolicy.DROP
        )
        try:
            for (batch,) in batches:
                yield batch["images"], batch["labels"].view(-1).long()
        finally:
            del batches, pipeline  # the epoch's decoder buffers go before the next epoch's are made
