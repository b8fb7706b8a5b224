"""Every data set's facts, each written once: names, sizes, pixel statistics, splits and roles.

Standard library only (no torch, numpy or PIL): the planner, the spec and the command line read
these facts on login nodes. The loaders (normae.data.sources, .pretrain, .classification,
.analysis_images) read them from here.

A set's roles are its membership of the three vocabularies below (pre-training set, classification
set, analysis image source); each vocabulary is one ``Literal``, its tuple is derived from it.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
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
# The file in a configured data folder that marks it as generated rehearsal data (normae.data.rehearsal).
# A generated miniature copy of a set carries this JSON file in the set's folder: {"dataset": <name>,
# "generated_by": "...", "num_classes": int, "train_images": int, "eval_images": int}. `normae
# check-data` then checks the copy's counts against it instead of the published sizes, and says so.
REHEARSAL_MANIFEST = "normae-rehearsal.json"


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

# The four IDX files of Fashion-MNIST, each plain or gzipped (with a .gz suffix), and where the
# readers look for them when no folder is given: $NORMAE_FASHION_MNIST, then ./data/fashion-mnist,
# then Debian's dataset-fashion-mnist package.
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FASHION_MNIST_ENV = "NORMAE_FASHION_MNIST"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def holds_fashion_mnist(folder: Path) -> bool:
    """Whether ``folder`` holds the four Fashion-MNIST files, each plain or gzipped."""
    return all((folder / name).is_file() or (folder / f"{name}.gz").is_file() for name in FASHION_MNIST_FILES)


def fashion_mnist_candidates() -> list[tuple[Path, str]]:
    """Where Fashion-MNIST is looked for when no folder is given, in order, each with what it is:
    $NORMAE_FASHION_MNIST, ./data/fashion-mnist, Debian's folder (the loaders and check-data alike)."""
    candidates = []
    if os.environ.get(FASHION_MNIST_ENV):
        candidates.append((Path(os.environ[FASHION_MNIST_ENV]), f"${FASHION_MNIST_ENV}"))
    candidates.append((Path.cwd() / "data" / "fashion-mnist", "project data cache"))
    candidates.append((DEBIAN_FASHION_MNIST, "Debian package dataset-fashion-mnist"))
    return candidates


# The IDX format of these files: type code (third magic byte) -> big-endian numpy dtype.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# The files and folders each set's loader reads, one line each, for the messages that say where a
# set was looked for (the loaders' errors and `normae check-data`).
LAYOUTS: dict[str, str] = {
    "imagenet1k": "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG, one folder per class wnid, "
    "e.g. <root>/train/n01440764/n01440764_10026.JPEG (validation images sorted into their class folders)",
    "cifar10": "<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
    "cifar100": "<root>/cifar-100-python/{train,test,meta}",
    "flowers102": "<root>/flowers-102/{jpg/image_00001.jpg..,imagelabels.mat,setid.mat}",
    "pets": "<root>/oxford-iiit-pet/{images/<Breed>_<n>.jpg,annotations/{trainval,test}.txt}",
    "dtd": "<root>/dtd/dtd/{images/<class>/<name>.jpg,labels/{train1,val1,test1}.txt}",
    "food101": "<root>/food-101/{images/<class>/<id>.jpg,meta/{train,test}.json}",
    "aircraft": "<root>/fgvc-aircraft-2013b/data/{images/<id>.jpg,variants.txt,images_variant_{trainval,test}.txt}",
    "caltech101": "<root>/caltech101/101_ObjectCategories/<class>/image_0001.jpg.. (BACKGROUND_Google included)",
    "fashion_mnist": ", ".join(f"<folder>/{name}.gz" for name in FASHION_MNIST_FILES)
    + " (each file plain or gzipped with a .gz suffix)",
}
LAYOUTS["imagenet100"] = (
    f"the ImageNet-1K folder ({LAYOUTS['imagenet1k']}); the 100 wnids listed in "
    "normae/resources/imagenet100_classes.txt are read from it"
)


def short_name(dataset: str) -> str:
    """The name a run id uses for ``dataset`` (an unknown name stands for itself)."""
    return DATASETS[dataset].short_name if dataset in DATASETS else dataset


# The data map's keys (config/config.yaml `data:`, `--data NAME=FOLDER`): the sets read from a folder
# on disk. ImageNet-100 is read in place from the ImageNet-1K folder, the 5-class Fashion-MNIST from
# Fashion-MNIST's; digits, generated and sklearn_samples need no folder.
_FOLDER_OF = {"imagenet100": "imagenet1k", "fashion_mnist_subset5": "fashion_mnist"}
_NO_FOLDER = ("digits", "generated")
FOLDER_DATASETS: tuple[str, ...] = tuple(
    name for name in CLASSIFICATION_DATASETS if name not in _FOLDER_OF and name not in _NO_FOLDER
)


def folder_key(dataset: str) -> str | None:
    """The data map's key whose folder ``dataset`` is read from (None: it needs no folder)."""
    key = _FOLDER_OF.get(dataset, dataset)
    return key if key in FOLDER_DATASETS else None


def read_class_file(class_file: str | Path | None = None) -> list[str]:
    """Sorted wnids listed one per line in class_file (default: the packaged ImageNet-100 list)."""
    if class_file is None:
        text = files("normae").joinpath("resources/imagenet100_classes.txt").read_text()
    else:
        text = Path(class_file).read_text()
    return sorted({line.strip() for line in text.splitlines() if line.strip()})


def imagenet1k_wnids() -> list[str] | None:
    """The 1000 ImageNet-1K wnids, sorted, from timm's installed synset list; None without timm.

    timm is found, not imported: importing it imports torch.
    """
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "_info" / "imagenet_synsets.txt"
    if not path.is_file():
        return None
    return sorted({line.strip() for line in path.read_text().splitlines() if line.strip()})
