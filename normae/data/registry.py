"""Every data set's facts, each written once: names, sizes, pixel statistics, splits and roles.

Standard library only (no torch, numpy or PIL): the planner, the spec and the command line read
these facts on login nodes. The loaders (normae.data.sources, .pretrain, .classification,
.analysis_images) read them from here.

A set's roles are its membership of the three vocabularies below (pre-training set, classification
set, analysis image source); each vocabulary is one ``Literal``, its tuple is derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

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
# sklearn_samples: scikit-learn's two bundled photographs, cut into crops; an analysis source only.
AnalysisSource = Literal["fashion_mnist", "generated", "sklearn_samples", "imagenet1k", "imagenet100"]
DatasetName = Literal[PretrainDataset, ClassificationDataset, AnalysisSource]
Role = Literal["pretrain", "classification", "analysis"]

PRETRAIN_DATASETS: tuple[str, ...] = get_args(PretrainDataset)
CLASSIFICATION_DATASETS: tuple[str, ...] = get_args(ClassificationDataset)
ANALYSIS_SOURCES: tuple[str, ...] = get_args(AnalysisSource)
DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Computed from the 60000 Fashion-MNIST training images (pixels scaled to [0, 1]).
FASHION_MNIST_MEAN = (0.2860, 0.2860, 0.2860)
FASHION_MNIST_STD = (0.3530, 0.3530, 0.3530)

CALTECH101_TRAIN_PER_CLASS = 30
CALTECH101_EVAL_PER_CLASS = 50
DIGITS_TEST_FRACTION = 0.25
# The generated set as a classification set: like Flowers-102, which has 20 training (train+val)
# images per class and many more test images.
GENERATED_TRAIN_SIZE = 200
GENERATED_EVAL_SIZE = 500
# The generated set for pre-training and the analyses (each split: seed 0 train, seed 1 eval).
GENERATED_PRETRAIN_SAMPLES = 512


@dataclass(frozen=True)
class DatasetFacts:
    """One data set. Counts are the published split sizes (the split we use where there is none)."""

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
    # Our split of the 8,677 images of the 101 classes: 30 per class train, the rest (at most 50
    # per class) evaluate; 2,945 is sum(min(50, n - 30)) over the published class sizes n.
    _photos(
        "caltech101",
        101,
        101 * CALTECH101_TRAIN_PER_CLASS,
        2_945,
        f"{CALTECH101_TRAIN_PER_CLASS} images per class (numpy default_rng(0))",
        f"the other images, at most {CALTECH101_EVAL_PER_CLASS} per class (numpy default_rng(0))",
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


def short_name(dataset: str) -> str:
    """The name a run id uses for ``dataset`` (an unknown name stands for itself)."""
    return DATASETS[dataset].short_name if dataset in DATASETS else dataset
