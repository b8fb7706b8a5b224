"""Fetch Fashion-MNIST into the project data cache, preferring Debian's dataset-fashion-mnist package."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from normae.data import registry
from normae.data import sources as data

DEBIAN_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_COUNTS = {"train": 60000, "t10k": 10000}
GZ_FILES = [f"{name}.gz" for name in registry.FASHION_MNIST_FILES]


class SourceFailed(RuntimeError):
    """One source of the data did not deliver; the message says why."""


def _copy_gz_files(source: Path, dest: Path) -> None:
    missing = [name for name in GZ_FILES if not (source / name).is_file()]
    if missing:
        raise SourceFailed(f"{source} lacks {', '.join(missing)}")
    for name in GZ_FILES:
        shutil.copyfile(source / name, dest / name)


def _run(command, cwd) -> None:
    if shutil.which(command[0]) is None:
        raise SourceFailed(f"`{command[0]}` is not installed")
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-500:]
        raise SourceFailed(f"`{' '.join(command)}` exited with {result.returncode}: {output}")


def _from_debian_folder(dest: Path) -> None:
    if not registry.DEBIAN_FASHION_MNIST.is_dir():
        raise SourceFailed(f"{registry.DEBIAN_FASHION_MNIST} does not exist")
    _copy_gz_files(registry.DEBIAN_FASHION_MNIST, dest)


def _from_apt_download(dest: Path) -> None:
    """Download the Debian package without installing it (needs no root) and unpack it."""
    with tempfile.TemporaryDirectory() as work:
        _run(["apt-get", "download", DEBIAN_PACKAGE], cwd=work)
        debs = sorted(Path(work).glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if not debs:
            raise SourceFailed(f"`apt-get download {DEBIAN_PACKAGE}` left no .deb file")
        unpacked = Path(work) / "unpacked"
        _run(["dpkg", "-x", str(debs[0]), str(unpacked)], cwd=work)
        _copy_gz_files(unpacked / registry.DEBIAN_FASHION_MNIST.relative_to("/"), dest)


def _from_torchvision(dest: Path) -> None:
    from torchvision.datasets import FashionMNIST

    with tempfile.TemporaryDirectory() as work:
        try:
            raw = FashionMNIST(work, download=True).raw_folder
        except (RuntimeError, OSError) as e:
            raise SourceFailed(f"torchvision download failed: {e}") from e
        _copy_gz_files(Path(raw), dest)


def verify_fashion_mnist(folder) -> None:
    """Raise CorruptDataError unless folder holds the full Fashion-MNIST: 60000/10000 labelled 28x28 images."""
    folder = Path(folder)
    for prefix, count in FASHION_MNIST_COUNTS.items():
        images = data.read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = data.read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
        if images.shape != (count, 28, 28) or labels.shape != (count,):
            raise data.CorruptDataError(
                f"{folder}: expected {count} images of 28x28 with as many labels for {prefix}, "
                f"found images {images.shape} and labels {labels.shape}"
            )
        if labels.min() < 0 or labels.max() > 9:
            raise data.CorruptDataError(f"{folder}: {prefix} labels outside 0..9")


def fetch_fashion_mnist(dest="data/fashion-mnist", allow_download=False) -> Path:
    """Put the four gzipped Fashion-MNIST IDX files into dest unless they are there already.

    Sources, in order: Debian's installed folder, `apt-get download` of the Debian package,
    and (only with allow_download) torchvision's download from the internet. The files are
    gathered and verified in a temporary folder next to dest, then moved in by rename, so
    dest never holds a partial download.
    """
    dest = Path(dest)
    if all((dest / name).is_file() for name in GZ_FILES):
        verify_fashion_mnist(dest)
        return dest
    sources = [("Debian folder", _from_debian_folder), ("apt-get download", _from_apt_download)]
    if allow_download:
        sources.append(("torchvision download", _from_torchvision))
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}-") as work:
        staging = Path(work) / dest.name
        for source_name, fetch in sources:
            staging.mkdir()
            try:
                fetch(staging)
                break
            except SourceFailed as e:
                failures.append(f"  {source_name}: {e}")
                shutil.rmtree(staging)
        else:
            if not allow_download:
                failures.append("  torchvision download: skipped, allow_download is False")
            raise data.DataNotFoundError(
                "Could not fetch Fashion-MNIST. Tried:\n" + "\n".join(failures) + "\n"
                f"Install the Debian package (`apt-get install {DEBIAN_PACKAGE}`), allow the download from "
                f"the internet (`normae fetch-data fashion-mnist --download`), or set "
                f"{registry.FASHION_MNIST_ENV} to a folder holding the four IDX files."
            )
        verify_fashion_mnist(staging)
        if dest.exists():
            for name in GZ_FILES:
                os.replace(staging / name, dest / name)
        else:
            staging.rename(dest)
    return dest
