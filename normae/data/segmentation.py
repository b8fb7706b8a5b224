"""Semantic segmentation data: ADE20K as mmseg reads it, a Fashion-MNIST canvas stand-in, and their joint
image + mask transforms (normae.data.segmentation_transforms).

Items are ``(image, mask)``: the image float32 C x H x W, normalised with the set's statistics, the
mask int64 H x W holding class indices and IGNORE_INDEX (255) where no class is scored. Their facts
(classes, sizes, statistics, the mmseg pipeline sizes) are normae.data.registry's DATASETS and
SEGMENTATION_SETS. Every random draw of a transform comes from torch's generator, so an item read
inside normae.training.runtime.seeded_randomness is reproducible (normae.training.sampling).

A user's data problem (a folder not there, an unpaired file, an unreadable image, a label outside
the classes) is a normae.errors.DataNotFoundError or CorruptDataError in one line naming the file.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.datasets.utils import download_url, extract_archive
from torchvision.transforms.v2 import functional as F

from normae.data.layouts import ON_DISK
from normae.data.registry import (
    CANVAS_INK,
    CANVAS_ITEMS,
    CANVAS_SIDE,
    DATASETS,
    IGNORE_INDEX,
    LAYOUTS,
    SEGMENTATION_SETS,
)
from normae.data.registry_files import ADE20K_FOLDER, ade20k_folder
from normae.data.segmentation_transforms import eval_transform, finish_transform, train_transform
from normae.data.sources import FashionMNIST, find_fashion_mnist
from normae.errors import ConfigError, CorruptDataError, DataNotFoundError

__all__ = [
    "ADE20K",
    "FashionMNISTCanvas",
    "build_segmentation_dataset",
    "eval_transform",
    "reduce_zero_label",
    "train_transform",
]

ADE20K_URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
# No MD5 of the archive is published (torchvision's download checks MD5 only): this is the SHA-1 the
# ADE20K preparation scripts of GluonCV and Segmenter check, checked here between download and unpacking.
ADE20K_SHA1 = "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"
# The canvases of each split are drawn with numpy default_rng(seed) (which source images) and
# default_rng((seed, index)) (where they go); the registry's split names say the same.
CANVAS_SEEDS = {"train": 0, "eval": 1}
Split = Literal["train", "eval"]


def reduce_zero_label(mask: torch.Tensor) -> torch.Tensor:
    """mmseg's reduce_zero_label: label 0 ("other", not a class) -> IGNORE_INDEX, every other label - 1,
    IGNORE_INDEX stays; the dtype is kept. ADE20K's 150 classes are its raw labels 1..150."""
    return torch.where((mask == 0) | (mask == IGNORE_INDEX), IGNORE_INDEX, mask - 1).to(mask.dtype)


def _check_split(split: str) -> None:
    if split not in ("train", "eval"):
        raise ConfigError(f"split must be 'train' or 'eval', got {split!r}")


def _ade20k_fix() -> str:
    return (
        "(fix: set data.ade20k in config/config.yaml or pass --data ade20k=/path (--data-root where a command "
        f"takes one); --download (download=True) fetches it; expected layout: {LAYOUTS['ade20k']})"
    )


def download_ade20k(root: Path) -> None:
    """Fetch ADEChallengeData2016.zip into ``root`` (kept there), check its SHA-1 and unpack it there.

    torchvision's download_and_extract_archive in its two halves (download_url, extract_archive), so
    that the SHA-1 is checked before unpacking.
    """
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{ADE20K_FOLDER}.zip"
    if not archive.is_file():
        download_url(ADE20K_URL, str(root), archive.name)
    digest = hashlib.sha1(usedforsecurity=False)
    with open(archive, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != ADE20K_SHA1:
        raise CorruptDataError(
            f"ADE20K: {archive} has SHA-1 {digest.hexdigest()}, the published archive {ADE20K_SHA1}: a broken "
            "download (fix: remove it and download again)"
        )
    extract_archive(str(archive), str(root))


def _files(folder: Path, suffix: str) -> dict[str, Path]:
    with os.scandir(folder) as entries:
        return {Path(e.name).stem: Path(e.path) for e in entries if e.is_file() and e.name.endswith(suffix)}


def _open(path: Path, what: str) -> Image.Image:
    """The loaded PIL image at ``path``; an unreadable file is a CorruptDataError naming it."""
    try:
        with warnings.catch_warnings():  # EXIF and palette warnings: the image still decodes
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.load()
                return image.convert("RGB") if what == "image" else image.copy()
    except (OSError, SyntaxError, ValueError) as error:
        raise CorruptDataError(f"ADE20K: cannot read {what} {path}: {error} (fix: replace the file)") from error


class ADE20K(Dataset):
    """ADE20K's SceneParsing split (ADEChallengeData2016) as mmseg reads it: ``images/<split>/X.jpg``
    paired by name with ``annotations/<split>/X.png`` (training for "train", validation for "eval").

    ``root`` is the folder holding ADEChallengeData2016, or that folder itself. Nothing is downloaded
    unless ``download`` is True (download_ade20k). Annotations are single-channel ("L" or "P") with
    raw labels 0..150; reduce_zero_label makes 0 the ignored label and 1..150 the classes 0..149.
    ``transform`` (see normae.data.segmentation_transforms) takes and returns ``(image, mask)``
    tv_tensors; None only converts to float and normalises.
    """

    name = "ade20k"

    def __init__(self, root, split: Split = "train", transform=None, download: bool = False):
        _check_split(split)
        facts, layout = DATASETS[self.name], ON_DISK[self.name]
        (split_name,) = layout.split_files()[split]
        self.root, self.split = Path(root), split
        self.num_classes = int(facts.num_classes or 0)
        self.reduce_zero_label = SEGMENTATION_SETS[self.name].reduce_zero_label
        self.transform = finish_transform(self.name) if transform is None else transform
        if download and not (ade20k_folder(self.root) / str(layout.images) / split_name).is_dir():
            download_ade20k(self.root)
        base = ade20k_folder(self.root)
        image_dir, annotation_dir = base / str(layout.images) / split_name, base / str(layout.labels) / split_name
        for folder in (image_dir, annotation_dir):
            if not folder.is_dir():
                looked = str(folder)
                if base == self.root:  # neither root/ADEChallengeData2016 nor root itself holds the set
                    looked = f"{self.root / ADE20K_FOLDER / folder.relative_to(base)} (nor {folder})"
                raise DataNotFoundError(f"ADE20K: no folder {looked} {_ade20k_fix()}")
        self.samples = self._pairs(image_dir, annotation_dir)

    @staticmethod
    def _pairs(image_dir: Path, annotation_dir: Path) -> list[tuple[Path, Path]]:
        images, annotations = _files(image_dir, ".jpg"), _files(annotation_dir, ".png")
        lacking = sorted(images.keys() - annotations.keys())
        if lacking:
            raise DataNotFoundError(
                f"ADE20K: image {images[lacking[0]]} has no annotation {annotation_dir / f'{lacking[0]}.png'} "
                f"({len(lacking)} image(s) of {image_dir} lack one) {_ade20k_fix()}"
            )
        lacking = sorted(annotations.keys() - images.keys())
        if lacking:
            raise DataNotFoundError(
                f"ADE20K: annotation {annotations[lacking[0]]} has no image {image_dir / f'{lacking[0]}.jpg'} "
                f"({len(lacking)} annotation(s) of {annotation_dir} lack one) {_ade20k_fix()}"
            )
        if not images:
            raise DataNotFoundError(f"ADE20K: no .jpg image in {image_dir} {_ade20k_fix()}")
        return [(images[stem], annotations[stem]) for stem in sorted(images)]

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """Item ``index`` before the transform: the uint8 3 x H x W image and its checked, reduced uint8 mask."""
        image_path, annotation_path = self.samples[index]
        image, annotation = _open(image_path, "image"), _open(annotation_path, "annotation")
        if annotation.mode not in ("L", "P"):
            raise CorruptDataError(
                f"ADE20K: annotation {annotation_path} is a {annotation.mode} image, not single-channel labels "
                "(mode L or P) (fix: replace the file)"
            )
        if image.size != annotation.size:
            raise CorruptDataError(
                f"ADE20K: image {image_path} is {image.size[0]} x {image.size[1]} but its annotation "
                f"{annotation_path} is {annotation.size[0]} x {annotation.size[1]} (fix: replace the pair)"
            )
        raw = np.array(annotation, dtype=np.uint8)
        top = self.num_classes if self.reduce_zero_label else self.num_classes - 1
        present = np.flatnonzero(np.bincount(raw.ravel(), minlength=256))
        bad = [int(value) for value in present if value > top and value != IGNORE_INDEX]
        if bad:
            raise CorruptDataError(
                f"ADE20K: annotation {annotation_path} holds label value(s) {bad[:8]} outside 0..{top} (and "
                f"{IGNORE_INDEX}, ignored) (fix: replace the file)"
            )
        mask = torch.from_numpy(raw)
        if self.reduce_zero_label:
            mask = reduce_zero_label(mask)
        return tv_tensors.Image(F.pil_to_tensor(image)), tv_tensors.Mask(mask)

    def __getitem__(self, index: int):
        return self.transform(*self.read(index))


class FashionMNISTCanvas(Dataset):
    """ADE20K's offline stand-in: ``items`` Fashion-MNIST images pasted on a black ``canvas`` square.

    The train canvases come from Fashion-MNIST's train split, the eval ones from its test split. One
    permutation of the split (numpy default_rng(seed)) deals each source image to exactly one canvas,
    ``items`` each in turn, so canvases share no garment and a split has (source images) // items; the
    positions of canvas ``index`` are drawn by default_rng((seed, index)), uniform with the whole
    garment inside. A later item covers the earlier ones where it has ink: pixels of at least ``ink``
    (CANVAS_INK = 50 of 255). Fashion-MNIST's background is exactly 0 and its garments' edges fade
    through a one-pixel anti-aliased rim: 50 drops that rim (15% of the non-zero pixels, the faintest)
    and keeps the garments' bodies, so that a pixel's label is sure. The label is the item's class + 1
    on its ink and 0 (the background, a class of its own) elsewhere, where the image is 0.
    """

    name = "fashion_mnist_canvas"

    def __init__(
        self,
        root=None,
        split: Split = "train",
        transform=None,
        items: int = CANVAS_ITEMS,
        canvas: int = CANVAS_SIDE,
        ink: int = CANVAS_INK,
    ):
        _check_split(split)
        source = FashionMNIST(find_fashion_mnist(root), "train" if split == "train" else "test")
        self.images, self.labels = source.images, np.asarray(source.targets, dtype=np.int64)
        if items < 1 or canvas < max(self.images.shape[1:]):
            raise ConfigError(f"need items >= 1 and a canvas of at least {self.images.shape[1]} pixels")
        self.split, self.items, self.canvas, self.ink = split, items, canvas, ink
        self.seed = CANVAS_SEEDS[split]
        self.order = np.random.default_rng(self.seed).permutation(len(self.images))
        self.transform = finish_transform(self.name) if transform is None else transform

    def __len__(self) -> int:
        return len(self.images) // self.items

    def placements(self, index: int) -> list[tuple[int, int, int]]:
        """Canvas ``index``'s items in pasting order: (index in the source split, top, left)."""
        if not 0 <= index < len(self):
            raise IndexError(f"canvas {index} out of range for {len(self)} canvases")
        rng = np.random.default_rng((self.seed, index))
        height, width = self.images.shape[1:]
        tops = rng.integers(0, self.canvas - height + 1, size=self.items)
        lefts = rng.integers(0, self.canvas - width + 1, size=self.items)
        chosen = self.order[index * self.items : (index + 1) * self.items]
        return [(int(s), int(t), int(left)) for s, t, left in zip(chosen, tops, lefts)]

    def draw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Canvas ``index`` as uint8 arrays: the canvas x canvas gray image and its labels."""
        image = np.zeros((self.canvas, self.canvas), np.uint8)
        label = np.zeros((self.canvas, self.canvas), np.uint8)
        height, width = self.images.shape[1:]
        for source, top, left in self.placements(index):
            item = self.images[source]
            ink = item >= self.ink
            image[top : top + height, left : left + width][ink] = item[ink]
            label[top : top + height, left : left + width][ink] = self.labels[source] + 1
        return image, label

    def __getitem__(self, index: int):
        image, label = self.draw(index)
        rgb = tv_tensors.Image(torch.from_numpy(image).expand(3, -1, -1).clone())
        return self.transform(rgb, tv_tensors.Mask(torch.from_numpy(label)))


def build_segmentation_dataset(name: str, root, split: Split, crop: int, download: bool = False) -> Dataset:
    """The train split with train_transform(name, crop), or the eval split with eval_transform(name).

    ``root``: ADE20K's folder (see ADE20K), or Fashion-MNIST's for the canvases (None: looked up as
    normae.data.sources.find_fashion_mnist does). ``download`` only fetches ADE20K.
    """
    if name not in SEGMENTATION_SETS:
        raise ConfigError(f"unknown segmentation data set {name!r}; known: {', '.join(SEGMENTATION_SETS)}")
    _check_split(split)
    transform = train_transform(name, crop) if split == "train" else eval_transform(name)
    if name == "ade20k":
        if root is None:
            raise DataNotFoundError(f"ADE20K: no folder given {_ade20k_fix()}")
        return ADE20K(root, split, transform, download=download)
    return FashionMNISTCanvas(root, split, transform)
