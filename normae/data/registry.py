"""Every data set's facts, each written once: names, sizes, pixel statistics, splits and roles.

Standard library only (no torch, numpy or PIL): the planner, the spec and the command line read
these facts on login nodes. The loaders (normae.data.sources, .pretrain, .classification,
.analysis_images) read them from here.

A set's roles are its membership of the four vocabularies below (pre-training set, classification
set, semantic segmentation set, analysis image source); each vocabulary is one ``Literal``, its tuple
is derived from it. The files' facts (Fashion-MNIST's IDX files, the ImageNet wnid lists) live in
normae.data.registry_files, each set's on-disk layout in normae.data.layouts; the names the loaders
and the checks used before are re-exported here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, get_args

from normae.data.layouts import CALTECH101_SPLIT
from normae.data.layouts import LAYOUTS as LAYOUTS
from normae.data.registry_files import FASHION_MNIST_ENV as FASHION_MNIST_ENV
from normae.data.registry_files import FASHION_MNIST_FILES as FASHION_MNIST_FILES
from normae.data.registry_files import IDX_DTYPES as IDX_DTYPES
from normae.data.registry_files import holds_fashion_mnist as holds_fashion_mnist
from normae.data.registry_files import imagenet1k_wnids as imagenet1k_wnids
from normae.data.registry_files import read_class_file as read_class_file

PretrainDataset = Literal["fashion_mnist", "imagenet1k", "imagenet100", "generated"]
ClassificationDataset = Literal[
    "imagenet1k",
    "imagenet100",
    "cifar10",
    "cifar100",
    "flowers102",
    "pets",
    "dtd",
    "food101",
    "aircraft",
    "caltech101",
    "fashion_mnist",
    "digits",
    "fashion_mnist_subset5",
    "generated",
]
# fashion_mnist_canvas: Fashion-MNIST garments pasted on a larger black canvas, ADE20K's offline stand-in.
SegmentationDataset = Literal["ade20k", "fashion_mnist_canvas"]
# sklearn_samples: scikit-learn's two bundled photographs, cut into crops; an analysis source only.
AnalysisSource = Literal["fashion_mnist", "generated", "sklearn_samples", "imagenet1k", "imagenet100"]
DatasetName = Literal[PretrainDataset, ClassificationDataset, SegmentationDataset, AnalysisSource]
Role = Literal["pretrain", "classification", "segmentation", "analysis"]

PRETRAIN_DATASETS: tuple[str, ...] = get_args(PretrainDataset)
CLASSIFICATION_DATASETS: tuple[str, ...] = get_args(ClassificationDataset)
SEGMENTATION_DATASETS: tuple[str, ...] = get_args(SegmentationDataset)
ANALYSIS_SOURCES: tuple[str, ...] = get_args(AnalysisSource)
DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Computed from the 60000 Fashion-MNIST training images (pixels scaled to [0, 1]).
FASHION_MNIST_MEAN = (0.2860, 0.2860, 0.2860)
FASHION_MNIST_STD = (0.3530, 0.3530, 0.3530)

DIGITS_TEST_FRACTION = 0.25
# The generated set as a classification set: like Flowers-102, which has 20 training (train+val)
# images per class and many more test images.
GENERATED_TRAIN_SIZE = 200
GENERATED_EVAL_SIZE = 500
# The generated set for pre-training and the analyses (each split: seed 0 train, seed 1 eval).
GENERATED_PRETRAIN_SAMPLES = 512
# The file in a configured data folder that marks it as generated rehearsal data (normae.datagen.rehearsal).
# A generated miniature copy of a set carries this JSON file in the set's folder: {"dataset": <name>,
# "generated_by": "...", "num_classes": int, "train_images": int, "eval_images": int}. `normae
# check-data` then checks the copy's counts against it instead of the published sizes, and says so.
REHEARSAL_MANIFEST = "normae-rehearsal.json"

# Semantic segmentation. IGNORE_INDEX: the mask value no loss or metric counts (ADE20K's unlabelled
# pixels after reduce_zero_label, the padding of a crop). The canvas stand-in: CANVAS_ITEMS
# Fashion-MNIST images on a black CANVAS_SIDE square; a pixel is a garment's where the image is at
# least CANVAS_INK (of 255); each source image is used once, so a split has (source images) // items.
IGNORE_INDEX = 255
CANVAS_SIDE = 56
CANVAS_ITEMS = 4
CANVAS_INK = 50


@dataclass(frozen=True)
class DatasetFacts:
    """One data set. Counts are the published split sizes (the split we use where there is none).

    A segmentation set's img_size is its training crop; its num_classes counts the classes scored.
    """

    name: str
    short_name: str  # in run ids
    num_classes: int | None
    img_size: int | None  # input size: a pre-training set's native size, a classification set's fine-tuning input
    native_size: int | None  # side of the stored images where all share one, else None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    eval_crop_pct: float | None  # crop_pct for eval_transform; 1.0 keeps small whole-object images uncropped
    train_images: int | None
    eval_images: int | None
    train_split_name: str | None
    eval_split_name: str | None
    source: str  # where the images come from
    stand_in_for: str | None = None  # for an offline stand-in: the name of the paper's set it replaces

    @property
    def roles(self) -> frozenset[str]:
        """Which of pretrain, classification, analysis this set serves."""
        members = {
            "pretrain": PRETRAIN_DATASETS,
            "classification": CLASSIFICATION_DATASETS,
            "segmentation": SEGMENTATION_DATASETS,
            "analysis": ANALYSIS_SOURCES,
        }
        return frozenset(role for role, names in members.items() if self.name in names)


def _photos(
    name,
    num_classes,
    train_images,
    eval_images,
    train_split_name,
    eval_split_name,
    source,
    native_size=None,
    short_name=None,
):
    """A set of photographs, fine-tuned at 224 px with the ImageNet statistics."""
    return DatasetFacts(
        name,
        short_name or name,
        num_classes,
        224,
        native_size,
        IMAGENET_MEAN,
        IMAGENET_STD,
        0.875,
        train_images,
        eval_images,
        train_split_name,
        eval_split_name,
        source,
    )


_FACTS = (
    _photos(
        "imagenet1k",
        1000,
        1_281_167,
        50_000,
        "train",
        "val",
        "normae.data.sources.imagenet1k (ImageFolder)",
        short_name="in1k",
    ),
    _photos(
        "imagenet100",
        100,
        126_689,
        5_000,
        "train",
        "val",
        "normae.data.sources.ImageNet100 (ImageFolder)",
        short_name="in100",
    ),
    _photos("cifar10", 10, 50_000, 10_000, "train", "test", "torchvision CIFAR10", native_size=32),
    _photos("cifar100", 100, 50_000, 10_000, "train", "test", "torchvision CIFAR100", native_size=32),
    _photos("flowers102", 102, 2_040, 6_149, "train+val", "test", "torchvision Flowers102"),
    _photos("pets", 37, 3_680, 3_669, "trainval", "test", "torchvision OxfordIIITPet (category)"),
    _photos("dtd", 47, 3_760, 1_880, "train1+val1", "test1", "torchvision DTD (partition 1)"),
    _photos("food101", 101, 75_750, 25_250, "train", "test", "torchvision Food101"),
    _photos("aircraft", 100, 6_667, 3_333, "trainval", "test", "torchvision FGVCAircraft (variant)"),
    # Our split of the 8,677 images of the 101 classes (CALTECH101_SPLIT): 30 per class train, the rest
    # (at most 50 per class) evaluate; 2,945 is sum(min(50, n - 30)) over the published class sizes n.
    _photos(
        "caltech101",
        101,
        101 * CALTECH101_SPLIT.train,
        2_945,
        f"{CALTECH101_SPLIT.train} images per class (numpy default_rng(0))",
        f"the other images, at most {CALTECH101_SPLIT.eval} per class (numpy default_rng(0))",
        "torchvision Caltech101 (category), own split",
    ),
    DatasetFacts(
        "fashion_mnist",
        "fmnist",
        10,
        28,
        28,
        FASHION_MNIST_MEAN,
        FASHION_MNIST_STD,
        1.0,
        60_000,
        10_000,
        "train",
        "test",
        "normae.data.sources.FashionMNIST",
    ),
    # The 8x8 digits (1,797 images) are upsampled to the 28-pixel input of the Fashion-MNIST models.
    # Pixel statistics measured on the digits training split.
    DatasetFacts(
        "digits",
        "digits",
        10,
        28,
        8,
        (0.305, 0.305, 0.305),
        (0.376, 0.376, 0.376),
        1.0,
        1_347,
        450,
        "train (75%, stratified, random_state=0)",
        "test (25%, stratified, random_state=0)",
        "scikit-learn load_digits",
        stand_in_for="cifar10",
    ),
    # T-shirt/top, Trouser, Pullover, Dress and Coat: look-alike classes of one kind of object,
    # as Pets' breeds are; a far easier task than Pets all the same.
    DatasetFacts(
        "fashion_mnist_subset5",
        "fashion_mnist_subset5",
        5,
        28,
        28,
        FASHION_MNIST_MEAN,
        FASHION_MNIST_STD,
        1.0,
        30_000,
        5_000,
        "train, labels 0-4",
        "test, labels 0-4",
        "normae.data.sources.FashionMNIST, classes 0-4",
        stand_in_for="pets",
    ),
    # Pixel statistics measured on GeneratedImages. Its counts are the classification splits'
    # (pre-training draws GENERATED_PRETRAIN_SAMPLES per split).
    DatasetFacts(
        "generated",
        "gen",
        10,
        32,
        32,
        (0.5, 0.5, 0.5),
        (0.23, 0.23, 0.23),
        1.0,
        GENERATED_TRAIN_SIZE,
        GENERATED_EVAL_SIZE,
        f"seed 0, {GENERATED_TRAIN_SIZE} images",
        f"seed 1, {GENERATED_EVAL_SIZE} images",
        "normae.data.sources.GeneratedImages",
        stand_in_for="flowers102",
    ),
    # ADE20K (SceneParsing, ADEChallengeData2016): 150 classes after reduce_zero_label, trained on
    # 512 x 512 crops (BEiT's and MAE's UperNet protocol); images of many sizes.
    replace(
        _photos("ade20k", 150, 20_210, 2_000, "training", "validation", "normae.data.segmentation.ADE20K"),
        img_size=512,
        eval_crop_pct=None,
    ),
    # Class 0 is the background, 1-10 the Fashion-MNIST classes + 1; train from Fashion-MNIST's train split,
    # eval from its test split. Pixel statistics measured on the 15,000 training canvases (eval: 0.2023, 0.3270).
    DatasetFacts(
        "fashion_mnist_canvas",
        "fmnist_canvas",
        11,
        CANVAS_SIDE,
        CANVAS_SIDE,
        (0.2029, 0.2029, 0.2029),
        (0.3280, 0.3280, 0.3280),
        None,
        60_000 // CANVAS_ITEMS,
        10_000 // CANVAS_ITEMS,
        "canvases of the train split (numpy default_rng(0))",
        "canvases of the test split (numpy default_rng(1))",
        "normae.data.segmentation.FashionMNISTCanvas",
        stand_in_for="ade20k",
    ),
    # china.jpg and flower.jpg (427 x 640), cut into non-overlapping crops at their own resolution;
    # models see them with the ImageNet statistics.
    DatasetFacts(
        "sklearn_samples",
        "sklearn_samples",
        None,
        None,
        None,
        IMAGENET_MEAN,
        IMAGENET_STD,
        None,
        None,
        None,
        None,
        None,
        "scikit-learn load_sample_images (two photographs)",
    ),
)

DATASETS: dict[str, DatasetFacts] = {facts.name: facts for facts in _FACTS}
if set(DATASETS) != set(DATASET_NAMES) or len(DATASETS) != len(_FACTS):
    raise RuntimeError(f"normae.data.registry: facts for {sorted(DATASETS)}, vocabularies name {sorted(DATASET_NAMES)}")

# The classification sets, in CLASSIFICATION_DATASETS order (fine-tuning and linear probing read these).
CLASSIFICATION_SETS: dict[str, DatasetFacts] = {name: DATASETS[name] for name in CLASSIFICATION_DATASETS}


@dataclass(frozen=True)
class SegmentationFacts:
    """What a segmentation set's loader, augmentation and evaluation need beside its DatasetFacts.

    The sizes follow mmseg's ADE20K pipelines (BEiT's and MAE's configs): training rescales the image
    by a random ratio of the base scale (short side ``scale_short_side``, long side at most
    ``scale_long_side_max``, aspect kept), evaluation resizes to that base scale, then slides a
    crop-sized window with ``slide_stride``. None: no such limit, or no resize at evaluation.
    """

    reduce_zero_label: bool  # raw label 0 is "unlabelled": 0 -> IGNORE_INDEX, the others - 1
    scale_short_side: int
    scale_long_side_max: int | None
    eval_short_side: int | None
    eval_long_side_max: int | None
    slide_stride: int
    background: int | None  # the label of the background, where it is a class of its own
    photometric_distortion: bool  # mmseg's PhotoMetricDistortion in training (colour photographs)


SEGMENTATION_SETS: dict[str, SegmentationFacts] = {
    "ade20k": SegmentationFacts(True, 512, 2048, 512, 2048, 341, None, True),
    # One window of the side of the canvas; the stride 2/3 of it, as ADE20K's 341 is of 512.
    "fashion_mnist_canvas": SegmentationFacts(False, CANVAS_SIDE, None, None, None, 37, 0, False),
}

# Where the readers look for Fashion-MNIST when no folder is given: $NORMAE_FASHION_MNIST, then
# ./data/fashion-mnist, then Debian's dataset-fashion-mnist package.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def fashion_mnist_candidates() -> list[tuple[Path, str]]:
    """Where Fashion-MNIST is looked for when no folder is given, in order, each with what it is:
    $NORMAE_FASHION_MNIST, ./data/fashion-mnist, Debian's folder (the loaders and check-data alike)."""
    candidates = []
    if os.environ.get(FASHION_MNIST_ENV):
        candidates.append((Path(os.environ[FASHION_MNIST_ENV]), f"${FASHION_MNIST_ENV}"))
    candidates.append((Path.cwd() / "data" / "fashion-mnist", "project data cache"))
    candidates.append((DEBIAN_FASHION_MNIST, "Debian package dataset-fashion-mnist"))
    return candidates


def short_name(dataset: str) -> str:
    """The name a run id uses for ``dataset`` (an unknown name stands for itself)."""
    return DATASETS[dataset].short_name if dataset in DATASETS else dataset


# The data map's keys (config/config.yaml `data:`, `--data NAME=FOLDER`): the sets read from a folder
# on disk, the classification sets' then the segmentation sets'. ImageNet-100 is read in place from
# the ImageNet-1K folder, the 5-class Fashion-MNIST and the canvases from Fashion-MNIST's; digits,
# generated and sklearn_samples need no folder.
_OF_FASHION_MNIST = ("fashion_mnist_subset5", "fashion_mnist_canvas")
_FOLDER_OF = {"imagenet100": "imagenet1k", **dict.fromkeys(_OF_FASHION_MNIST, "fashion_mnist")}
_NO_FOLDER = ("digits", "generated")
_READ = CLASSIFICATION_DATASETS + SEGMENTATION_DATASETS
FOLDER_DATASETS: tuple[str, ...] = tuple(name for name in _READ if name not in _FOLDER_OF and name not in _NO_FOLDER)


def folder_key(dataset: str) -> str | None:
    """The data map's key whose folder ``dataset`` is read from (None: it needs no folder)."""
    key = _FOLDER_OF.get(dataset, dataset)
    return key if key in FOLDER_DATASETS else None
