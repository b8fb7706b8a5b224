"""An NVIDIA DALI loader for ImageNet-style image files with MAE's augmentation (``--loader dali``).

Pipeline: ``fn.readers.file`` reads the files in an order we give it; ``fn.decoders.image_random_crop``
decodes them (``device="mixed"``: nvJPEG, on the GPU's hardware JPEG decoder where it has one) straight
into a random crop of MAE's RandomResizedCrop distribution (area 0.2-1 of the picture, aspect ratio
3/4-4/3, ten tries); ``fn.resize`` takes the crop to ``img_size`` (bicubic, antialiased);
``fn.crop_mirror_normalize`` flips half of them and normalises with the data set's mean and std into NCHW
float. ``device="cpu"`` runs the same operators on the CPU (the tests use it; no GPU needed).

``DaliLoader(paths, labels, ...)`` reads an explicit file list: the pre-training run gives it the files
and labels of the data set the torchvision path reads (``dataset_files``: ImageNet-100's classes, a
``train_samples`` subset), the loader bench those of a folder (``DaliLoader.from_folder``).

What holds for exact resume. The torchvision path seeds every sample's augmentation by (seed, epoch,
index) (``normae.training.sampling``), so any stop, anywhere, resumes exactly. DALI's operators draw from
their own generators, advanced sample by sample inside the pipeline, so that rule cannot hold. Here:

- The order of the files is ours: ``batches(indices, seeds)`` reads exactly ``indices``, in that order
  (the pre-training loop's: ``normae.data.pretrain.epoch_order``, less the batches already done). It is
  exact everywhere, also when resuming in the middle of an epoch.
- The crops and flips come from a pipeline built afresh for every call of ``batches``, that is for every
  epoch, with seeds from (seed, epoch) alone (``epoch_seeds``), drawn sample by sample over the files it
  reads. A run resumed at an epoch boundary sees the same crops and flips as one that never stopped, given
  the same per-process batch size, number of processes, decoding device and DALI version. A run resumed
  inside an epoch builds that epoch's pipeline over the remaining files only, so it sees the same images
  in the same order with other crops and flips, until the epoch ends; from the next epoch on they are the
  same again.
- The mask noise is not DALI's: the pre-training loop draws it per (seed, epoch, index)
  (``normae.training.dali_batches``).

DALI is imported when a loader is made; without it, a ``ConfigError`` names the package to install.
This module imports torch (the tensors DALI hands over, ``Subset``), never ``training`` or ``core``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import Subset

from normae.data.pretrain import epoch_order
from normae.data.registry import DATASETS
from normae.errors import ConfigError, DataNotFoundError

__all__ = ["DaliLoader", "dataset_files", "epoch_order", "epoch_seeds", "image_folder", "list_images"]

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


def dataset_files(dataset) -> tuple[list[str], list[int]]:
    """(paths, labels) of the files a pre-training data set reads, in its index order: an ImageFolder's
    ``samples`` (ImageNet-1K, ImageNet-100's classes), through any ``Subset`` (``train_samples``)."""
    if isinstance(dataset, Subset):
        paths, labels = dataset_files(dataset.dataset)
        return [paths[i] for i in dataset.indices], [labels[i] for i in dataset.indices]
    if not hasattr(dataset, "samples"):
        raise ConfigError(
            f"the dali loader reads image files; {type(dataset).__name__} has none: use loader torchvision"
        )
    return [str(path) for path, _ in dataset.samples], [int(label) for _, label in dataset.samples]


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
        return images, (label.gpu() if device == "gpu" else label)

    pipeline = mae_pretrain_pipeline(
        batch_size=batch_size,
        num_threads=num_threads,
        device_id=device_id if device == "gpu" else None,
        seed=seeds["crop"],
    )
    pipeline.build()
    return pipeline


class DaliLoader:
    """Batches of (images, labels) through DALI over an explicit list of files and labels.

    ``batches(indices, seeds)`` reads the files ``indices`` (positions in ``paths``) in that order, in
    whole batches: images (N, 3, img_size, img_size) float32 on the GPU (``device="gpu"``, GPU
    ``device_id``) or the CPU, normalised with ``dataset``'s mean and std, and labels int64 beside them.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int],
        img_size: int,
        batch_size: int,
        device: str = "gpu",
        device_id: int | None = 0,
        num_threads: int = 4,
        dataset: str = "imagenet1k",
    ):
        import_dali()  # fail now, naming the fix, rather than at the first epoch
        if len(paths) != len(labels):
            raise ConfigError(f"{len(paths)} files but {len(labels)} labels")
        if len(paths) < batch_size:
            raise ConfigError(f"{len(paths)} images cannot fill one batch of {batch_size}")
        self.paths, self.labels = list(paths), list(labels)
        self.img_size, self.batch_size, self.dataset = img_size, batch_size, dataset
        self.device, self.device_id, self.num_threads = device, device_id, num_threads

    @classmethod
    def from_folder(cls, root: str | Path, img_size: int, batch_size: int, **options) -> DaliLoader:
        """Every image of ``root/<class>/`` (``root/train/<class>/`` for an ImageNet root), as ImageFolder lists."""
        import_dali()
        return cls(*list_images(image_folder(root)), img_size, batch_size, **options)

    def batches(self, indices: Sequence[int], seeds: dict[str, int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of files ``indices`` in that order (a ragged tail dropped), crops and flips drawn from
        ``seeds`` (``epoch_seeds``) over these files. The pipeline is built in this call (its threads start
        now), the batches come as they are iterated."""
        _, _, _, DALIGenericIterator, LastBatchPolicy = import_dali()
        files = list(indices)[: len(indices) // self.batch_size * self.batch_size]
        if not files:
            return iter(())
        pipeline = build_pipeline(
            [self.paths[i] for i in files],
            [self.labels[i] for i in files],
            self.img_size,
            self.batch_size,
            seeds,
            self.device,
            self.device_id,
            self.num_threads,
            self.dataset,
        )
        return _delivered(
            DALIGenericIterator(
                pipeline, ["images", "labels"], reader_name="Reader", last_batch_policy=LastBatchPolicy.DROP
            )
        )


def _delivered(iterator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    try:
        for (batch,) in iterator:
            yield batch["images"], batch["labels"].view(-1).long()
    finally:
        del iterator  # the pipeline's decoder buffers go before the next epoch's are made
