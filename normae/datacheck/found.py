"""What normae.datacheck.check's inspectors share: the copy being checked, what they found, the image files to sample.

Each inspector (normae.datacheck.image_sets, .arrays, .segmentation) reads the files its set's
loader opens, in the same way, and returns a ``Found``: the classes and split sizes the loader
would see, the image files it would open (to sample for decoding), and what in the layout would
make the loader fail. normae.datacheck.check compares the counts with the expected ones.

Torch-free: standard library only (the inspectors add numpy, PIL and scipy.io).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from normae.data.image_folders import image_files
from normae.data.registry import LAYOUTS, folder_key

# How to get a published copy again, for the fixes.
SOURCES = {
    "imagenet1k": "re-extract ILSVRC2012_img_train.tar (one inner tar per class) and ILSVRC2012_img_val.tar "
    "(sorted into class folders) from https://image-net.org",
    "cifar10": "re-extract cifar-10-python.tar.gz (`--download` fetches it)",
    "cifar100": "re-extract cifar-100-python.tar.gz (`--download` fetches it)",
    "flowers102": "re-extract 102flowers.tgz and fetch imagelabels.mat and setid.mat again (`--download` fetches them)",
    "pets": "re-extract images.tar.gz and annotations.tar.gz (`--download` fetches them)",
    "dtd": "re-extract dtd-r1.0.1.tar.gz (`--download` fetches it)",
    "food101": "re-extract food-101.tar.gz (`--download` fetches it)",
    "aircraft": "re-extract fgvc-aircraft-2013b.tar.gz (`--download` fetches it)",
    "caltech101": "re-extract 101_ObjectCategories.tar.gz from caltech-101.zip (`--download` fetches it)",
    "fashion_mnist": "`normae fetch-data fashion-mnist` (or `make data`) fetches it into data/fashion-mnist",
    "ade20k": "re-extract ADEChallengeData2016.zip from http://data.csail.mit.edu/places/ADEchallenge/ "
    "(`--download` fetches it)",
}
SOURCES["imagenet100"] = SOURCES["imagenet1k"]
REGENERATE = "regenerate the rehearsal data (normae.datagen.rehearsal.write_rehearsal_data)"

# The MD5 sums torchvision checks (torchvision.datasets.cifar, .flowers102). normae's loaders skip
# them, so that generated rehearsal copies load; a published copy is checked against them here.
MD5 = {
    "cifar10": {
        "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
        "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
        "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
        "cifar-10-batches-py/batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    "cifar100": {
        "cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
        "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "cifar-100-python/meta": "7973b15100ade9c7d40fb424638fde48",
    },
    "flowers102": {
        "flowers-102/imagelabels.mat": "e0620be6f572b9609742df49c70aed4d",
        "flowers-102/setid.mat": "a5357ecc9cb78c4bef273ce3793fc85c",
    },
}


@dataclass
class Copy:
    """The copy being checked: the set's name, its configured folder, and whether it is generated."""

    name: str
    folder: Path
    generated: bool = False

    @property
    def fix(self) -> str:
        """How to get a whole copy again."""
        return REGENERATE if self.generated else SOURCES[self.name]

    def layout_fix(self) -> str:
        """The fix names the data map's key the set is read from (ImageNet-100: imagenet1k, a key of its own
        would be refused by the config schema)."""
        return (
            f"(fix: point data.{folder_key(self.name) or self.name} at the folder that holds the set, or {self.fix}; "
            f"expected layout: {LAYOUTS[self.name]})"
        )

    def lacks(self, base: Path, names: list[str]) -> str:
        """The problem of a folder (or the set's folder) without the files or folders ``names``."""
        return f"{self.name}: {base} lacks {', '.join(names)} {self.layout_fix()}"


class Files:
    """The image files a loader opens, to draw a sample from, without holding ImageNet's 1.3M paths.

    Listed files are kept as paths; a class folder is kept as (folder, count) and listed again, in
    sorted order, only when one of its files is drawn.
    """

    def __init__(self) -> None:
        self._chunks: list[Path | list[Path]] = []
        self._ends: list[int] = []

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def add_paths(self, paths: list[Path]) -> None:
        if paths:
            self._chunks.append(paths)
            self._ends.append(len(self) + len(paths))

    def add_folder(self, folder: Path, count: int) -> None:
        if count:
            self._chunks.append(folder)
            self._ends.append(len(self) + count)

    def draw(self, samples: int, seed: int) -> list[Path]:
        """``samples`` files drawn with random.Random(seed) from the whole list (every file if it is shorter)."""
        indices = random.Random(seed).sample(range(len(self)), min(samples, len(self)))
        listings: dict[Path, list[Path]] = {}
        drawn = []
        for index in sorted(indices):
            chunk = bisect.bisect_right(self._ends, index)
            offset = index - (self._ends[chunk - 1] if chunk else 0)
            listed = self._chunks[chunk]
            if not isinstance(listed, list):
                listed = listings.setdefault(listed, image_files(listed))
            drawn.append(listed[offset])
        return drawn


@dataclass
class Found:
    """What an inspector read: what the loader would see, and what would make it fail."""

    classes: int | None = None
    class_source: str = ""  # where the classes were counted, for the messages
    train: int | None = None
    eval: int | None = None
    split_sources: tuple[str, str] = ("", "")  # where each split was counted
    files: Files = field(default_factory=Files)
    decoded: str | None = None  # the inspector's own decode check (CIFAR rows, IDX files); None: sample files
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts beside the counts
    classes_checked: bool = False  # the inspector compared the classes itself (ImageNet's wnids)


def md5_problems(copy: Copy) -> list[str]:
    """A published copy's files whose MD5 differs from the one torchvision checks (a generated copy has none)."""
    if copy.generated or copy.name not in MD5:
        return []
    problems = []
    for relative, expected in MD5[copy.name].items():
        digest = hashlib.md5(usedforsecurity=False)
        with open(copy.folder / relative, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            problems.append(
                f"{copy.name}: {copy.folder / relative} has MD5 {digest.hexdigest()}, the published file "
                f"{expected}: a damaged or different copy (fix: {copy.fix})"
            )
    return problems


def listed_images(copy: Copy, found: Found, paths: list[Path], listed_in: str) -> None:
    """Adds the images a split file lists to found.files; one that is not there would stop the loader mid-epoch."""
    names: dict[Path, set[str]] = {}
    present: list[Path] = []
    missing: list[Path] = []
    for path in paths:
        if path.parent not in names:
            names[path.parent] = set(os.listdir(path.parent)) if path.parent.is_dir() else set()
        (present if path.name in names[path.parent] else missing).append(path)
    if missing:
        found.problems.append(
            f"{copy.name}: {len(missing):,} of the {len(paths):,} images listed in {listed_in} are missing, "
            f"e.g. {', '.join(str(path) for path in missing[:5])} (fix: {copy.fix})"
        )
    found.files.add_paths(present)


def read_lines(path: Path) -> list[str]:
    """The lines of a split file as the loaders iterate them (``for line in file``)."""
    with open(path) as f:
        return list(f)


def bad_lines(copy: Copy, path: Path, lines: list[str], fields: int, separator: str | None = None) -> str | None:
    """A split file with lines that do not split into ``fields`` parts (the loader's unpacking fails)."""
    bad = [number for number, line in enumerate(lines, 1) if len(line.strip().split(separator)) != fields]
    if not bad:
        return None
    shown = ", ".join(f"line {number}: {lines[number - 1].strip()!r}" for number in bad[:3])
    return f"{copy.name}: {path} has {len(bad)} malformed line(s) ({shown}) (fix: {copy.fix})"


def need(copy: Copy, found: Found, base: Path, names: list[str]) -> bool:
    """Whether ``base`` holds the files and folders ``names`` (a folder's ends in /); a problem names those it lacks."""
    if not base.is_dir():
        found.problems.append(copy.lacks(copy.folder, [f"{base.relative_to(copy.folder)}/"]))
        return False

    def present(name: str) -> bool:
        return (base / name).is_dir() if name.endswith("/") else (base / name).is_file()

    lacking = [name for name in names if not present(name)]
    if lacking:
        found.problems.append(copy.lacks(base, lacking))
    return not lacking
