"""What the loaders of the sets of image files read from disk, read here without torch (for normae.datacheck.check).

One inspector per set (see normae.datacheck.found): ImageNet-1K and -100 as ImageFolder reads
them (normae.data.sources), and the torchvision sets as normae.data.classification's loaders read
them. Torch-free: standard library and numpy; scipy.io (Flowers-102's .mat files) only on demand.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from normae.data.image_folders import IMAGE_EXTENSIONS, check_class_folders
from normae.data.layouts import ON_DISK, Layout
from normae.data.registry import (
    imagenet1k_wnids,
    read_class_file,
)
from normae.datacheck.found import (
    Copy,
    Found,
    bad_lines,
    listed_images,
    md5_problems,
    need,
    read_lines,
)
from normae.errors import CorruptDataError


def some(names: list[str], limit: int = 5) -> str:
    """The first ``limit`` names, and how many more there are."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _opened(copy: Copy) -> tuple[Found, Layout, Path | None]:
    """A new Found, the set's layout and its own folder, which is None where it lacks a file or folder the
    loader needs (found.problems then names them)."""
    found, layout = Found(), ON_DISK[copy.name]
    base = copy.folder / layout.folder
    return found, layout, base if need(copy, found, base, layout.needed()) else None


def inspect_imagenet(copy: Copy, samples: int, seed: int) -> Found:
    """<folder>/{train,val}/<wnid>/ class folders as ImageFolder reads them, counted with os.scandir only.

    imagenet1k takes every class folder as a class: they must be exactly the 1000 ImageNet-1K wnids.
    imagenet100 takes the 100 listed wnids (others are ignored), which must all be there. ImageFolder
    refuses a class folder without images.
    """
    found = Found(classes_checked=True)
    subset = copy.name == "imagenet100"
    wanted = read_class_file() if subset else imagenet1k_wnids()
    if wanted is None:
        found.notes.append("wnids not checked: timm, whose imagenet_synsets.txt lists them, is not installed")
        found.classes_checked = False
    kind = "ImageNet-100" if subset else "ImageNet-1K"
    counts: list[int | None] = []
    layout = ON_DISK["imagenet1k"]  # ImageNet-100 is read from ImageNet-1K's folder
    splits = [split.rstrip("/") for split in (*layout.train, *layout.eval)]
    for split in splits:
        folder = copy.folder / split
        if not folder.is_dir():
            found.problems.append(copy.lacks(copy.folder, [f"{split}/"]))
            counts.append(None)
            continue
        with os.scandir(folder) as entries:
            present = sorted(entry.name for entry in entries if entry.is_dir())
        classes = present
        if wanted is not None:
            missing = sorted(set(wanted) - set(present))
            if missing:
                found.problems.append(
                    f"{copy.name}: {folder} has {len(present)} class folders and lacks {len(missing)} of the "
                    f"{len(wanted)} {kind} wnids: {some(missing)} {copy.layout_fix()}"
                )
            extra = sorted(set(present) - set(wanted))
            if extra and not subset:
                found.problems.append(
                    f"{copy.name}: {folder} holds {len(extra)} class folder(s) that are no ImageNet-1K wnid, which "
                    f"the loader would take as classes: {some(extra)} (fix: move them out of {folder})"
                )
            classes = [wnid for wnid in wanted if wnid in present] if subset else present
        try:
            class_counts = check_class_folders(folder, classes)
        except CorruptDataError as error:
            found.problems.append(f"{copy.name}: {error}")
            counts.append(None)
            continue
        total, empty = 0, []
        for wnid, count in zip(classes, class_counts):
            found.files.add_folder(folder / wnid, count)
            total += count
            if not count:
                empty.append(wnid)
        if empty:
            found.problems.append(
                f"{copy.name}: {len(empty)} class folder(s) of {folder} hold no image file "
                f"({'/'.join(IMAGE_EXTENSIONS)}), which ImageFolder refuses: {some(empty)} (fix: {copy.fix})"
            )
        counts.append(total)
        if split == splits[0]:
            found.classes, found.class_source = len(classes), f"the class folders of {folder}"
    found.train, found.eval = counts
    found.split_sources = (str(copy.folder / splits[0]), str(copy.folder / splits[1]))
    return found


def inspect_flowers102(copy: Copy, samples: int, seed: int) -> Found:
    """train = trnid + valid, eval = tstid of setid.mat; classes: the distinct labels of imagelabels.mat."""
    from scipy.io import loadmat

    found, layout, base = _opened(copy)
    if not base:
        return found
    found.problems += md5_problems(copy)
    label_file, split_file = base / str(layout.labels), base / str(layout.split_file)
    try:
        labels = np.atleast_1d(loadmat(label_file, squeeze_me=True)["labels"])
        set_ids = loadmat(split_file, squeeze_me=True)
        splits = {
            split: [image_id for key in keys for image_id in np.atleast_1d(set_ids[key]).astype(int).tolist()]
            for split, keys in layout.split_files().items()
        }
    except Exception as error:  # scipy raises ValueError, KeyError, TypeError... on a broken file
        found.problems.append(f"{copy.name}: cannot read {label_file} or {split_file} ({error!r}) (fix: {copy.fix})")
        return found
    found.classes, found.class_source = len(np.unique(labels)), f"the labels of {label_file}"
    found.train, found.eval = len(splits["train"]), len(splits["eval"])
    found.split_sources = (f"{'+'.join(layout.train)} of {split_file}", f"{'+'.join(layout.eval)} of {split_file}")
    ids = splits["train"] + splits["eval"]
    unlabelled = [image_id for image_id in ids if not 1 <= image_id <= len(labels)]
    if unlabelled:
        found.problems.append(
            f"{copy.name}: {layout.split_file} names {len(unlabelled)} image ids that {layout.labels} has no label "
            f"for, e.g. {unlabelled[:5]} (fix: {copy.fix})"
        )
    paths = [base / str(layout.images) / str(layout.image_name).format(image_id) for image_id in ids]
    listed_images(copy, found, paths, str(split_file))
    return found


def inspect_pets(copy: Copy, samples: int, seed: int) -> Found:
    """One image per line of annotations/{trainval,test}.txt (id, class, species, breed); class: the 2nd column."""
    found, layout, base = _opened(copy)
    if not base:
        return found
    counts, classes, paths = [], set(), []
    split_paths = [base / relative for relative in layout.train + layout.eval]
    for path in split_paths:
        lines = read_lines(path)
        problem = bad_lines(copy, path, lines, 4)
        if problem:
            found.problems.append(problem)
        rows = [line.split() for line in lines if len(line.split()) == 4]
        classes |= {row[1] for row in rows}
        paths += [base / str(layout.images) / f"{row[0]}.jpg" for row in rows]
        counts.append(len(lines))
    found.train, found.eval = counts
    found.split_sources = (str(split_paths[0]), str(split_paths[1]))
    listed_in = " and ".join(str(path) for path in split_paths)
    found.classes, found.class_source = len(classes), f"the 2nd column of {listed_in}"
    listed_images(copy, found, paths, listed_in)
    return found


def _listed(base: Path, relatives: tuple[str, ...]) -> str:
    """The split files ``relatives`` under ``base``, for the messages: one path, or several joined by "and"."""
    return " and ".join(str(base / relative) for relative in relatives)


def _same_classes(copy: Copy, found: Found, per_split: dict[str, set[str]]) -> None:
    """The loader numbers each split's classes by sorting its own names: every split must name the same ones."""
    union = set().union(*per_split.values())
    short = {split: len(union - names) for split, names in per_split.items() if names != union}
    if short:
        lacking = ", ".join(f"{split} lacks {count}" for split, count in short.items())
        found.problems.append(
            f"{copy.name}: the splits name different classes ({lacking}), so the loader would number "
            f"their labels differently (fix: {copy.fix})"
        )
    found.classes = len(union)


def inspect_dtd(copy: Copy, samples: int, seed: int) -> Found:
    """Partition 1: train = labels/train1.txt + val1.txt, eval = test1.txt; each line <class>/<name>.jpg."""
    found, layout, data = _opened(copy)
    if not data:
        return found
    counts, per_split, paths = {"train": 0, "eval": 0}, {}, []
    for split, relatives in layout.split_files().items():
        for relative in relatives:
            lines = read_lines(data / relative)
            problem = bad_lines(copy, data / relative, lines, 2, "/")
            if problem:
                found.problems.append(problem)
            rows = [line.strip().split("/") for line in lines if len(line.strip().split("/")) == 2]
            per_split[Path(relative).stem] = {row[0] for row in rows}
            paths += [data / str(layout.images) / row[0] / row[1] for row in rows]
            counts[split] += len(lines)
    found.train, found.eval = counts["train"], counts["eval"]
    found.split_sources = (_listed(data, layout.train), _listed(data, layout.eval))
    _same_classes(copy, found, per_split)
    found.class_source = _listed(data, layout.train + layout.eval)
    listed_images(copy, found, paths, found.class_source)
    return found


def inspect_food101(copy: Copy, samples: int, seed: int) -> Found:
    """meta/{train,test}.json map each class to its images (<class>/<id>, read as images/<class>/<id>.jpg)."""
    found, layout, base = _opened(copy)
    if not base:
        return found
    counts, per_split, paths = [], {}, []
    for path in [base / relative for relative in layout.train + layout.eval]:
        try:
            metadata = json.loads(path.read_text())
            listed = [(name, str(image)) for name, images in metadata.items() for image in images]
        except (ValueError, AttributeError, TypeError) as error:
            found.problems.append(f"{copy.name}: {path} is no class -> images JSON map ({error}) (fix: {copy.fix})")
            return found
        per_split[path.stem] = set(metadata)
        paths += [base.joinpath(str(layout.images), *f"{image}.jpg".split("/")) for _, image in listed]
        counts.append(len(listed))
    found.train, found.eval = counts
    found.split_sources = (_listed(base, layout.train), _listed(base, layout.eval))
    _same_classes(copy, found, per_split)
    listed_in = _listed(base, layout.train + layout.eval)
    found.class_source = f"the keys of {listed_in}"
    listed_images(copy, found, paths, listed_in)
    return found


def inspect_aircraft(copy: Copy, samples: int, seed: int) -> Found:
    """Classes: the lines of variants.txt; each line of images_variant_<split>.txt is '<id> <variant>'."""
    found, layout, data = _opened(copy)
    if not data:
        return found
    split_files = [*layout.train, *layout.eval]
    variants = [line.strip() for line in read_lines(data / str(layout.labels))]
    found.classes, found.class_source = len(variants), f"the lines of {data / str(layout.labels)}"
    counts, paths = [], []
    for name in split_files:
        lines = read_lines(data / name)
        rows = [line.strip().split(" ", 1) for line in lines]
        unknown = sorted({row[-1] for row in rows if len(row) != 2 or row[1] not in variants})
        if unknown:
            found.problems.append(
                f"{copy.name}: {data / name} names {len(unknown)} variant(s) not in {layout.labels}, "
                f"e.g. {unknown[:3]} (fix: {copy.fix})"
            )
        paths += [data / str(layout.images) / f"{row[0]}.jpg" for row in rows]
        counts.append(len(lines))
    found.train, found.eval = counts
    found.split_sources = (_listed(data, layout.train), _listed(data, layout.eval))
    listed_images(copy, found, paths, _listed(data, layout.train + layout.eval))
    return found


def inspect_caltech101(copy: Copy, samples: int, seed: int) -> Found:
    """Our split of the 101 classes (BACKGROUND_Google dropped): 30 per class train, then at most 50 eval.

    torchvision's Caltech101 takes every entry of 101_ObjectCategories as a class and, for a class
    folder of n entries, opens image_0001.jpg .. image_<n>.jpg: a stray file breaks it.
    """
    found, layout = Found(), ON_DISK[copy.name]
    categories, split = copy.folder / layout.folder, layout.per_class
    left_out, image_name = str(layout.left_out), str(layout.image_name)
    assert split is not None, "caltech101's layout splits each class"
    if not need(copy, found, categories.parent, [f"{categories.name}/"]):
        return found
    entries = sorted(os.listdir(categories))
    if left_out not in entries:
        found.problems.append(copy.lacks(categories, [f"{left_out}/ (torchvision removes it by name)"]))
    classes = [entry for entry in entries if entry != left_out]
    sizes, odd, small = {}, [], []
    for name in classes:
        folder = categories / name
        if not folder.is_dir():
            odd.append(f"{name} (not a folder)")
            continue
        present = set(os.listdir(folder))
        expected = {image_name.format(number) for number in range(1, len(present) + 1)}
        if present != expected:
            odd.append(f"{name} ({', '.join(sorted(present - expected)[:2])} instead of {image_name.format(1)}..)")
        sizes[name] = len(present)
        found.files.add_paths([folder / image for image in sorted(present & expected)])
        if not split.sizes(len(present))[1]:
            small.append(f"{name} ({len(present)})")
    if odd:
        found.problems.append(
            f"{copy.name}: {len(odd)} entries of {categories} are not class folders of {image_name.format(1)}, "
            f"{image_name.format(2)}.. (numbered from 1) as torchvision reads them: {'; '.join(odd[:3])} "
            f"(fix: move stray files out, or {copy.fix})"
        )
    if small:
        found.problems.append(
            f"{copy.name}: {len(small)} classes have {split.train} images or fewer, none left to "
            f"evaluate: {', '.join(small[:5])} (fix: {copy.fix})"
        )
    found.classes, found.class_source = len(classes), f"the class folders of {categories} but {left_out}"
    per_class = [split.sizes(size) for size in sizes.values()]
    found.train, found.eval = sum(train for train, _ in per_class), sum(evaluate for _, evaluate in per_class)
    found.split_sources = (f"{split.train} per class of {categories}", f"the rest, at most {split.eval} per class")
    return found
