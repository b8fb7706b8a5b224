"""The image files of a folder of class folders as torchvision's ImageFolder finds them, and what would be read twice.

The ImageNet loaders (normae.data.sources) and `normae check-data` (normae.datacheck) count and refuse
alike through ``check_class_folders``. Standard library only (no torch, numpy or PIL).
"""

from __future__ import annotations

import os
from pathlib import Path

from normae.errors import CorruptDataError

# torchvision.datasets.folder.IMG_EXTENSIONS: the files ImageFolder counts (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class Reached:
    """The folders (by device and inode) and linked files (by real path) a walk over one split has reached.

    ImageFolder follows symbolic links and never notices reaching one place twice: a link to a parent
    folder (a cycle) made 16 images into 7,216 samples, a link to another class folder or two links to
    one file make one image two samples. ``walk_images`` refuses each; a stat per folder and per linked
    file only, so ImageNet's 1.28 M plain files cost nothing more.
    """

    def __init__(self) -> None:
        self.folders: dict[tuple[int, int], str] = {}
        self.links: dict[str, str] = {}  # a linked file's real path -> the link

    def enter(self, folder: str) -> None:
        info = os.stat(folder)
        first = self.folders.setdefault((info.st_dev, info.st_ino), folder)
        if first != folder:
            raise CorruptDataError(
                f"{folder} is {first} reached again through a symbolic link (a link cycle, or one folder read "
                f"as two): its images would be read twice (fix: remove the link)"
            )

    def link(self, path: str) -> None:
        target = os.path.realpath(path)
        first = self.links.setdefault(target, path)
        if first != path:
            raise CorruptDataError(f"{path} and {first} link to one file, {target} (fix: remove one of the links)")

    def check_links(self) -> None:
        """After the walk: a linked file in a folder the walk reached is read twice (as itself and as the link)."""
        for target, path in self.links.items():
            info = os.stat(os.path.dirname(target))
            if (info.st_dev, info.st_ino) in self.folders:
                raise CorruptDataError(f"{path} links to {target}, which is read too (fix: remove the link)")


def walk_images(folder: Path, reached: Reached):
    """The image files under ``folder`` as ImageFolder finds them (os.walk with followlinks, by extension);
    a folder or linked file reached twice in the walks sharing ``reached`` is a CorruptDataError."""
    reached.enter(str(folder))
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                yield from walk_images(Path(entry.path), reached)
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                if entry.is_symlink():
                    reached.link(entry.path)
                yield entry.path


def count_images(folder: Path, reached: Reached | None = None) -> int:
    """How many image files ImageFolder finds in a class folder; os.scandir only, no stat per plain file."""
    return sum(1 for _ in walk_images(folder, reached or Reached()))


def check_class_folders(split_folder: Path, classes: list[str]) -> list[int]:
    """The image count of each class folder of a split, refusing (CorruptDataError) what would be read twice.

    The one check of check-data and of the ImageNet loaders (normae.data.sources), which must refuse alike.
    """
    reached = Reached()
    reached.enter(str(split_folder))  # a link back to the split folder is a cycle too
    counts = [count_images(split_folder / name, reached) for name in classes]
    reached.check_links()
    return counts


def image_files(folder: Path) -> list[Path]:
    return sorted(Path(path) for path in walk_images(folder, Reached()))
