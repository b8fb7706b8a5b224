"""File facts the registry re-exports: Fashion-MNIST's IDX files, the ImageNet wnids, ADE20K's folder.

Split from normae.data.registry to keep that module to the sets' facts; import these names from
normae.data.registry, which re-exports every one of them. Each set's on-disk layout is
normae.data.layouts. Where Fashion-MNIST is looked for
(``fashion_mnist_candidates``, ``DEBIAN_FASHION_MNIST``) stays in the registry itself, where tests
and callers patch it. Standard library only (no torch, numpy or PIL), as the registry is.
"""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path

# The four IDX files of Fashion-MNIST, each plain or gzipped (with a .gz suffix), and the variable
# that names a folder holding them.
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FASHION_MNIST_ENV = "NORMAE_FASHION_MNIST"

# The IDX format of these files: type code (third magic byte) -> big-endian numpy dtype.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def holds_fashion_mnist(folder: Path) -> bool:
    """Whether ``folder`` holds the four Fashion-MNIST files, each plain or gzipped."""
    return all((folder / name).is_file() or (folder / f"{name}.gz").is_file() for name in FASHION_MNIST_FILES)


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


# ADE20K's archive unpacks to this folder; a configured ADE20K folder may hold it or be it.
ADE20K_FOLDER = "ADEChallengeData2016"


def ade20k_folder(root: str | Path) -> Path:
    """The ADEChallengeData2016 folder of a configured ADE20K folder: ``root/ADEChallengeData2016``
    where that is a folder, else ``root`` itself (the loader and check-data alike)."""
    nested = Path(root) / ADE20K_FOLDER
    return nested if nested.is_dir() else Path(root)
