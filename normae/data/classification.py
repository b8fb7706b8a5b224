"""Classification data sets for fine-tuning and linear probing, each with a train and an evaluation split.

Their facts (classes, input size, statistics, split names) are normae.data.registry.CLASSIFICATION_SETS.
"""

from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset
from torchvision import datasets, transforms

from normae.data.layouts import CALTECH101_SPLIT, ON_DISK
from normae.data.pickles import load_data_pickle
from normae.data.registry import (
    CLASSIFICATION_SETS,
    DIGITS_TEST_FRACTION,
    GENERATED_EVAL_SIZE,
    GENERATED_TRAIN_SIZE,
    LAYOUTS,
)
from normae.data.sources import (
    IMAGENET_HELP,
    FashionMNIST,
    GeneratedImages,
    GrayImageArray,
    ImageNet100,
    find_fashion_mnist,
    imagenet1k,
)
from normae.errors import ConfigError, DataNotFoundError, NormaeError


def _without_md5(file_list):
    return [[filename, None] for filename, _ in file_list]


class _FilesExistCIFAR:
    """torchvision's CIFAR-10/100 check, unless downloading, only that their files exist.

    torchvision compares every file with the published MD5 sums, so a miniature copy in the real
    layout (normae.datagen.rehearsal) would be "not found or corrupted": the sums are checked by
    `normae check-data` instead. torchvision's check_integrity skips the sum where it is None. With
    download=True the sums stay, so that a download is verified and a corrupt copy fetched again.
    Without the sums, every file torchvision will unpickle is first read by the restricted reader
    (normae.data.pickles), which refuses a pickle that would run code.
    """

    def __init__(self, root, train, transform, download):
        if not download:
            self.train_list = _without_md5(self.train_list)
            self.test_list = _without_md5(self.test_list)
            self.meta = {**self.meta, "md5": None}
            base = Path(root) / self.base_folder
            for name, _ in [*(self.train_list if train else self.test_list), (self.meta["filename"], None)]:
                if (base / name).is_file():  # a missing one: torchvision's own "not found" below
                    load_data_pickle(base / name)
        super().__init__(root, train=train, transform=transform, download=download)


class _CIFAR10(_FilesExistCIFAR, datasets.CIFAR10):
    pass


class _CIFAR100(_FilesExistCIFAR, datasets.CIFAR100):
    pass


class _Flowers102(datasets.Flowers102):
    """torchvision's Flowers-102 whose check, unless downloading, asks only that the .mat files exist.

    As for CIFAR (_FilesExistCIFAR): the MD5 sums are checked by `normae check-data`, and by
    torchvision still where download=True.
    """

    def __init__(self, root, split, transform, download):
        if not download:
            self._file_dict = {key: (filename, None) for key, (filename, _) in self._file_dict.items()}
        super().__init__(root, split, transform=transform, download=download)


def _cifar10(root, train, transform, download):
    return _CIFAR10(root, train, transform, download)


def _cifar100(root, train, transform, download):
    return _CIFAR100(root, train, transform, download)


def _flowers102(root, train, transform, download):
    splits = ("train", "val") if train else ("test",)
    parts = [_Flowers102(root, split, transform, download) for split in splits]
    return ConcatDataset(parts) if train else parts[0]


def _pets(root, train, transform, download):
    return datasets.OxfordIIITPet(
        root, "trainval" if train else "test", target_types="category", transform=transform, download=download
    )


def _dtd(root, train, transform, download):
    splits = ("train", "val") if train else ("test",)
    parts = [datasets.DTD(root, split, partition=1, transform=transform, download=download) for split in splits]
    return ConcatDataset(parts) if train else parts[0]


def _food101(root, train, transform, download):
    return datasets.Food101(root, "train" if train else "test", transform=transform, download=download)


def _aircraft(root, train, transform, download):
    return datasets.FGVCAircraft(
        root, "trainval" if train else "test", annotation_level="variant", transform=transform, download=download
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def _caltech101(root, train, transform, download):
    # Looked for here first: torchvision's Caltech101 creates <root>/caltech101 before it looks.
    categories = Path(root) / ON_DISK["caltech101"].folder
    if not download and not categories.is_dir():
        raise FileNotFoundError(f"no folder {categories}")
    transform = _to_rgb if transform is None else transforms.Compose([_to_rgb, transform])
    full = datasets.Caltech101(root, target_type="category", transform=transform, download=download)
    return Subset(full, caltech101_split(full.y, "train" if train else "eval"))


_TORCHVISION_BUILDERS = {
    "cifar10": _cifar10,
    "cifar100": _cifar100,
    "flowers102": _flowers102,
    "pets": _pets,
    "dtd": _dtd,
    "food101": _food101,
    "aircraft": _aircraft,
    "caltech101": _caltech101,
}


def caltech101_split(labels, split) -> list[int]:
    """Indices of the fixed Caltech-101 split, which has no official one.

    Following the usual transfer protocol, each class (in label order) is shuffled with one
    numpy default_rng(0): its first 30 images train, the next at most 50 evaluate (CALTECH101_SPLIT).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(0)
    chosen = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        chosen.extend(members[CALTECH101_SPLIT.members(split)])
    return sorted(int(index) for index in chosen)


class Digits(GrayImageArray):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), split 75/25 stratified with random_state=0."""

    def __init__(self, split="train", transform=None):
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        # scikit-learn (and the pandas and scipy it pulls in) costs seconds of start-up: only here.
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        train, test = train_test_split(
            np.arange(len(digits.target)), test_size=DIGITS_TEST_FRACTION, random_state=0, stratify=digits.target
        )
        indices = train if split == "train" else test
        self.images = (digits.images[indices] * (255 / 16)).round().astype(np.uint8)  # pixels are 0..16
        self.targets = digits.target[indices].tolist()
        self.transform = transform


def _fashion_mnist_subset5(root, split, transform):
    full = FashionMNIST(find_fashion_mnist(root), split, transform)
    return Subset(full, [index for index, label in enumerate(full.targets) if label < 5])


def build_classification_dataset(name, root, split, transform, download=False) -> Dataset:
    """The train or eval split of a set in CLASSIFICATION_SETS; items are (image, int label).

    download=True lets the torchvision sets fetch their files; the other sets are read in place
    (ImageNet cannot be downloaded) or need no files (digits, generated).
    """
    if name not in CLASSIFICATION_SETS:
        raise ConfigError(f"unknown classification data set {name!r}; known: {', '.join(CLASSIFICATION_SETS)}")
    if split not in ("train", "eval"):
        raise ConfigError(f"split must be 'train' or 'eval', got {split!r}")
    train = split == "train"
    if name in _TORCHVISION_BUILDERS:
        return _load_torchvision(name, root, train, transform, download)
    if name in ("imagenet1k", "imagenet100"):
        if root is None:
            raise DataNotFoundError(f"{name} needs root, the ImageNet-1K folder.\n{IMAGENET_HELP}")
        build = imagenet1k if name == "imagenet1k" else ImageNet100
        return build(root, "train" if train else "val", transform)
    if name == "fashion_mnist":
        return FashionMNIST(find_fashion_mnist(root), "train" if train else "test", transform)
    if name == "fashion_mnist_subset5":
        return _fashion_mnist_subset5(root, "train" if train else "test", transform)
    if name == "digits":
        return Digits("train" if train else "test", transform)
    info = CLASSIFICATION_SETS[name]
    return GeneratedImages(
        GENERATED_TRAIN_SIZE if train else GENERATED_EVAL_SIZE,
        info.img_size,
        info.num_classes,
        seed=0 if train else 1,
        transform=transform,
    )


def _load_torchvision(name, root, train, transform, download):
    hint = f"Expected layout: {LAYOUTS[name]}\n`--download` (download=True) fetches it into root."
    if root is None:
        raise DataNotFoundError(f"{name} needs root, the folder that holds it.\n{hint}")
    # RuntimeError: torchvision's "Dataset not found or corrupted"; FileNotFoundError: a missing split file.
    try:
        return _TORCHVISION_BUILDERS[name](root, train, transform, download)
    except NormaeError:  # a file that is there but refused (normae.data.pickles) says so itself
        raise
    except (RuntimeError, FileNotFoundError) as error:
        raise DataNotFoundError(f"{name} not found in {root} ({error}).\n{hint}") from error


def targets_of(dataset) -> list[int]:
    """Every label of dataset, in order, read from the labels the loaders keep rather than from the items."""
    if isinstance(dataset, ConcatDataset):
        return [label for part in dataset.datasets for label in targets_of(part)]
    if isinstance(dataset, Subset):
        labels = targets_of(dataset.dataset)
        return [labels[index] for index in dataset.indices]
    for attribute in ("targets", "_labels", "y"):
        if hasattr(dataset, attribute):
            return [int(label) for label in getattr(dataset, attribute)]
    return [int(label) for _, label in dataset]
