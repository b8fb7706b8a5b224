"""The readers: Fashion-MNIST (IDX files), ImageNet-1K/100 (class folders) and a synthetic set for tests.

Their facts (sizes, classes, pixel statistics) are in normae.data.registry; the augmented
pre-training sets are built by normae.data.pretrain, the classification sets by normae.data.classification.
"""

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets

from normae.data.image_folders import check_class_folders
from normae.data.registry import (
    DATASETS,
    FASHION_MNIST_ENV,
    LAYOUTS,
    fashion_mnist_candidates,
    holds_fashion_mnist,
    imagenet1k_wnids,
    read_class_file,
)
from normae.data.registry import IDX_DTYPES as _IDX_DTYPES
from normae.errors import ConfigError, CorruptDataError, DataNotFoundError

FASHION_MNIST_HELP = f"""Expected layout: {LAYOUTS["fashion_mnist"]}
Get it with `make data` or `normae fetch-data fashion-mnist` (fills data/fashion-mnist from Debian's
dataset-fashion-mnist package), or set {FASHION_MNIST_ENV} to a folder holding these files."""
IMAGENET_HELP = f"""Expected ImageNet-1K (ILSVRC2012) layout: {LAYOUTS["imagenet1k"]}
ImageNet cannot be downloaded automatically: get ILSVRC2012 from https://image-net.org and pass its folder as root."""


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzipped."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise CorruptDataError(f"{path}: broken gzip stream ({e})") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise CorruptDataError(f"{path}: not an IDX file (magic bytes {data[:4].hex()!r})")
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise CorruptDataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header_size
    if found != expected:
        raise CorruptDataError(f"{path}: shape {shape} needs {expected} data bytes, found {found}")
    return np.frombuffer(data, dtype, offset=header_size).astype(dtype.newbyteorder("=")).reshape(shape)


def _fashion_mnist_file(root: Path, name: str) -> Path:
    for path in (root / name, root / f"{name}.gz"):
        if path.is_file():
            return path
    raise DataNotFoundError(f"Fashion-MNIST file {root / name}[.gz] not found.\n{FASHION_MNIST_HELP}")


class GrayImageArray(Dataset):
    """Items from ``self.images`` (N, H, W uint8) and ``self.targets``, as RGB (gray repeated) PIL images."""

    images: np.ndarray
    targets: list
    transform = None

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        image = Image.fromarray(self.images[index]).convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


class FashionMNIST(GrayImageArray):
    """Fashion-MNIST from its four IDX files; images come out as RGB (gray repeated) PIL images."""

    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    def __init__(self, root, split="train", transform=None):
        prefixes = {"train": "train", "test": "t10k"}
        if split not in prefixes:
            raise ConfigError(f"split must be one of {list(prefixes)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.transform = transform
        images_path = _fashion_mnist_file(self.root, f"{prefixes[split]}-images-idx3-ubyte")
        labels_path = _fashion_mnist_file(self.root, f"{prefixes[split]}-labels-idx1-ubyte")
        self.images = read_idx(images_path)
        labels = read_idx(labels_path)
        if self.images.ndim != 3 or labels.shape != (len(self.images),):
            raise CorruptDataError(
                f"{images_path} holds images of shape {self.images.shape} but {labels_path} "
                f"holds labels of shape {labels.shape}"
            )
        self.targets = labels.astype(int).tolist()


def find_fashion_mnist(root=None) -> Path:
    """The given root (which must hold the files), else the first of $NORMAE_FASHION_MNIST,
    ./data/fashion-mnist and Debian's folder."""
    if root is not None:
        if holds_fashion_mnist(Path(root)):
            return Path(root)
        raise DataNotFoundError(f"Fashion-MNIST not found in the given folder {root}.\n{FASHION_MNIST_HELP}")
    candidates = fashion_mnist_candidates()
    for folder, _ in candidates:
        if holds_fashion_mnist(folder):
            return folder
    looked = "\n".join(f"  {folder} ({where})" for folder, where in candidates)
    raise DataNotFoundError(f"Fashion-MNIST not found. Looked in:\n{looked}\n{FASHION_MNIST_HELP}")


def load_image(path) -> Image.Image:
    """ImageFolder loader that reports an unreadable image by its path."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptDataError(f"cannot read image {path}: {e}") from e


def _split_folder(root, split) -> Path:
    if split not in ("train", "val"):
        raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
    folder = Path(root) / split
    if not folder.is_dir() or not any(entry.is_dir() for entry in folder.iterdir()):
        raise DataNotFoundError(f"No ImageNet class folders in {folder}.\n{IMAGENET_HELP}")
    return folder


class ImageNetFolder(datasets.ImageFolder):
    """An ImageNet-1K split as ImageFolder reads it, refusing before any training what `normae check-data`
    refuses: more class folders than ImageNet-1K's classes (a label past the model's 1000-way head would
    stop training mid-epoch), and a folder or file reached twice through symbolic links (a link cycle made
    16 images into 7,216 samples), by check-data's own check (normae.data.image_folders)."""

    def __init__(self, root, split="train", transform=None):
        super().__init__(_split_folder(root, split), transform=transform, loader=load_image)
        check_class_folders(Path(self.root), self.classes)

    def find_classes(self, directory):
        classes, class_to_idx = super().find_classes(directory)
        limit = DATASETS["imagenet1k"].num_classes
        if len(classes) > limit:
            wnids = imagenet1k_wnids()
            extra = [name for name in classes if name not in set(wnids)] if wnids else []
            named = f": {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}" if extra else ""
            raise CorruptDataError(
                f"{directory} holds {len(classes)} class folders, more than ImageNet-1K's {limit} classes{named} "
                f"(fix: move the folders that are no ImageNet-1K wnid out of {directory})"
            )
        return classes, class_to_idx


def imagenet1k(root, split="train", transform=None) -> datasets.ImageFolder:
    return ImageNetFolder(root, split, transform)


class ImageNet100(ImageNetFolder):
    """The ImageNet-100 classes read in place from an ImageNet-1K tree; labels 0..99 follow sorted wnids."""

    def __init__(self, root, split="train", transform=None, class_file=None):
        self.wnids = read_class_file(class_file)
        super().__init__(root, split, transform)

    def find_classes(self, directory):
        present = {entry.name for entry in os.scandir(directory) if entry.is_dir()}
        missing = [wnid for wnid in self.wnids if wnid not in present]
        if missing:
            raise DataNotFoundError(
                f"{directory} lacks {len(missing)} of the {len(self.wnids)} ImageNet-100 classes, "
                f"e.g. {', '.join(missing[:5])}.\n{IMAGENET_HELP}"
            )
        return self.wnids, {wnid: label for label, wnid in enumerate(self.wnids)}


class GeneratedImages(Dataset):
    """Small synthetic labelled set for tests, drawn per index from (seed, index).

    Each image is a smooth stripe pattern whose orientation depends on the class, a soft blob
    and mild noise, so that neighbouring patches look alike, as in natural images.
    """

    def __init__(self, num_samples, img_size=32, num_classes=10, seed=0, transform=None):
        self.num_samples = num_samples
        self.img_size = img_size
        self.seed = seed
        self.transform = transform
        self.classes = [f"class_{label}" for label in range(num_classes)]
        self.targets = [index % num_classes for index in range(num_samples)]

    def __len__(self):
        return self.num_samples

    def __getitem__(self, index):
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        label = self.targets[index]
        image = Image.fromarray(self._draw(label, np.random.default_rng([self.seed, index])))
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def _draw(self, label, rng) -> np.ndarray:
        y, x = np.mgrid[0 : self.img_size, 0 : self.img_size] / self.img_size
        angle = np.pi * (label + rng.uniform(-0.2, 0.2)) / len(self.classes)
        cycles = rng.uniform(1.0, 2.5)
        phase = 2 * np.pi * cycles * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi)
        stripes = (0.5 + 0.5 * np.sin(phase))[..., None]
        center_y, center_x = rng.uniform(0.2, 0.8, size=2)
        radius = rng.uniform(0.1, 0.25)
        blob = np.exp(-((x - center_x) ** 2 + (y - center_y) ** 2) / (2 * radius**2))[..., None]
        dark, light, blob_color = rng.uniform(0, 1, size=(3, 3))
        image = stripes * light + (1 - stripes) * dark
        image = (1 - blob) * image + blob * blob_color + rng.normal(0, 0.02, image.shape)
        return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
