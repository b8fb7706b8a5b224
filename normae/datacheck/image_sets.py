"""What the loaders of the sets of image files read from disk, read here without torch (for normae.datacheck.check).

One inspector per set (see normae.datacheck.found): ImageNet-1K and -100 as ImageFolder reads
them (normae.data.sources), and the torchvision sets as normae.data.classification's loaders read
them. Torch-free: standard library and numpy; scipy.io (Flowers-102's .mat files) only on demand.
"""

from __future__ import annotations

import json
import os

import numpy as np

from normae.data.image_folders import IMAGE_EXTENSIONS, check_class_folders
from normae.data.registry import (
    CALTECH101_EVAL_PER_CLASS,
    CALTECH101_TRAIN_PER_CLASS,
    DATASETS,
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
    facts = DATASETS[copy.name]
    splits = [str(facts.train_split_name), str(facts.eval_split_name)]
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

    found = Found()
    base = copy.folder / "flowers-102"
    if not need(copy, found, base, ["jpg/", "imagelabels.mat", "setid.mat"]):
        return found
    found.problems += md5_problems(copy)
    try:
        labels = np.atleast_1d(loadmat(base / "imagelabels.mat", squeeze_me=True)["labels"])
        set_ids = loadmat(base / "setid.mat", squeeze_me=True)
        splits = [np.atleast_1d(set_ids[key]).astype(int).tolist() for key in ("trnid", "valid", "tstid")]
    except Exception as error:  # scipy raises ValueError, KeyError, TypeError... on a broken file
        mat_files = f"{base}/{{imagelabels,setid}}.mat"
        found.problems.append(f"{copy.name}: cannot read {mat_files} ({error!r}) (fix: {copy.fix})")
        return found
    found.classes, found.class_source = len(np.unique(labels)), f"the labels of {base / 'imagelabels.mat'}"
    found.train, found.eval = len(splits[0]) + len(splits[1]), len(splits[2])
    found.split_sources = (f"trnid+valid of {base / 'setid.mat'}", f"tstid of {base / 'setid.mat'}")
    ids = [image_id for split in splits for image_id in split]
    unlabelled = [image_id for image_id in ids if not 1 <= image_id <= len(labels)]
    if unlabelled:
        found.problems.append(
            f"{copy.name}: setid.mat names {len(unlabelled)} image ids that imagelabels.mat has no label for, "
            f"e.g. {unlabelled[:5]} (fix: {copy.fix})"
        )
    paths = [base / "jpg" / f"image_{image_id:05d}.jpg" for image_id in ids]
    listed_images(copy, found, paths, str(base / "setid.mat"))
    return found


def inspect_pets(copy: Copy, samples: int, seed: int) -> Found:
    """One image per line of annotations/{trainval,test}.txt (id, class, species, breed); class: the 2nd column."""
    found = Found()
    base = copy.folder / "oxford-iiit-pet"
    if not need(copy, found, base, ["images/", "annotations/trainval.txt", "annotations/test.txt"]):
        return found
    counts, classes, paths = [], set(), []
    for split in ("trainval", "test"):
        path = base / "annotations" / f"{split}.txt"
        lines = read_lines(path)
        problem = bad_lines(copy, path, lines, 4)
        if problem:
            found.problems.append(problem)
        rows = [line.split() for line in lines if len(line.split()) == 4]
        classes |= {row[1] for row in rows}
        paths += [base / "images" / f"{row[0]}.jpg" for row in rows]
        counts.append(len(lines))
    found.train, found.eval = counts
    found.split_sources = (str(base / "annotations" / "trainval.txt"), str(base / "annotations" / "test.txt"))
    found.classes, found.class_source = len(classes), f"the 2nd column of {base / 'annotations'}/{{trainval,test}}.txt"
    listed_images(copy, found, paths, f"{base / 'annotations'}/{{trainval,test}}.txt")
    return found


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
    found = Found()
    data = copy.folder / "dtd" / "dtd"
    files = {split: f"labels/{split}1.txt" for split in ("train", "val", "test")}
    if not need(copy, found, data, ["images/", *files.values()]):
        return found
    counts, per_split, paths = {}, {}, []
    for split, relative in files.items():
        lines = read_lines(data / relative)
        problem = bad_lines(copy, data / relative, lines, 2, "/")
        if problem:
            found.problems.append(problem)
        rows = [line.strip().split("/") for line in lines if len(line.strip().split("/")) == 2]
        per_split[split] = {row[0] for row in rows}
        paths += [data / "images" / row[0] / row[1] for row in rows]
        counts[split] = len(lines)
    found.train, found.eval = counts["train"] + counts["val"], counts["test"]
    found.split_sources = (f"{data / 'labels'}/{{train1,val1}}.txt", str(data / "labels" / "test1.txt"))
    _same_classes(copy, found, per_split)
    found.class_source = f"{data / 'labels'}/{{train1,val1,test1}}.txt"
    listed_images(copy, found, paths, f"{data / 'labels'}/{{train1,val1,test1}}.txt")
    return found


def inspect_food101(copy: Copy, samples: int, seed: int) -> Found:
    """meta/{train,test}.json map each class to its images (<class>/<id>, read as images/<class>/<id>.jpg)."""
    found = Found()
    base = copy.folder / "food-101"
    if not need(copy, found, base, ["images/", "meta/train.json", "meta/test.json"]):
        return found
    counts, per_split, paths = [], {}, []
    for split in ("train", "test"):
        path = base / "meta" / f"{split}.json"
        try:
            metadata = json.loads(path.read_text())
            listed = [(name, str(image)) for name, images in metadata.items() for image in images]
        except (ValueError, AttributeError, TypeError) as error:
            found.problems.append(f"{copy.name}: {path} is no class -> images JSON map ({error}) (fix: {copy.fix})")
            return found
        per_split[split] = set(metadata)
        paths += [base.joinpath("images", *f"{image}.jpg".split("/")) for _, image in listed]
        counts.append(len(listed))
    found.train, found.eval = counts
    found.split_sources = (str(base / "meta" / "train.json"), str(base / "meta" / "test.json"))
    _same_classes(copy, found, per_split)
    found.class_source = f"the keys of {base / 'meta'}/{{train,test}}.json"
    listed_images(copy, found, paths, f"{base / 'meta'}/{{train,test}}.json")
    return found


def inspect_aircraft(copy: Copy, samples: int, seed: int) -> Found:
    """Classes: the lines of variants.txt; each line of images_variant_<split>.txt is '<id> <variant>'."""
    found = Found()
    data = copy.folder / "fgvc-aircraft-2013b" / "data"
    split_files = ["images_variant_trainval.txt", "images_variant_test.txt"]
    if not need(copy, found, data, ["images/", "variants.txt", *split_files]):
        return found
    variants = [line.strip() for line in read_lines(data / "variants.txt")]
    found.classes, found.class_source = len(variants), f"the lines of {data / 'variants.txt'}"
    counts, paths = [], []
    for name in split_files:
        lines = read_lines(data / name)
        rows = [line.strip().split(" ", 1) for line in lines]
        unknown = sorted({row[-1] for row in rows if len(row) != 2 or row[1] not in variants})
        if unknown:
            found.problems.append(
                f"{copy.name}: {data / name} names {len(unknown)} variant(s) not in variants.txt, "
                f"e.g. {unknown[:3]} (fix: {copy.fix})"
            )
        paths += [data / "images" / f"{row[0]}.jpg" for row in rows]
        counts.append(len(lines))
    found.train, found.eval = counts
    found.split_sources = (str(data / split_files[0]), str(data / split_files[1]))
    listed_images(copy, found, paths, f"{data}/images_variant_{{trainval,test}}.txt")
    return found


def inspect_caltech101(copy: Copy, samples: int, seed: int) -> Found:
    """Our split of the 101 classes (BACKGROUND_Google dropped): 30 per class train, then at most 50 eval.

    torchvision's Caltech101 takes every entry of 101_ObjectCategories as a class and, for a class
    folder of n entries, opens image_0001.jpg .. image_<n>.jpg: a stray file breaks it.
    """
    found = Found()
    categories = copy.folder / "caltech101" / "101_ObjectCategories"
    if not need(copy, found, categories.parent, ["101_ObjectCategories/"]):
        return found
    entries = sorted(os.listdir(categories))
    if "BACKGROUND_Google" not in entries:
        found.problems.append(copy.lacks(categories, ["BACKGROUND_Google/ (torchvision removes it by name)"]))
    classes = [entry for entry in entries if entry != "BACKGROUND_Google"]
    sizes, odd, small = {}, [], []
    for name in classes:
        folder = categories / name
        if not folder.is_dir():
            odd.append(f"{name} (not a folder)")
            continue
        present = set(os.listdir(folder))
        expected = {f"image_{number:04d}.jpg" for number in range(1, len(present) + 1)}
        if present != expected:
            odd.append(f"{name} ({', '.join(sorted(present - expected)[:2])} instead of image_0001.jpg..)")
        sizes[name] = len(present)
        found.files.add_paths([folder / image for image in sorted(present & expected)])
        if len(present) <= CALTECH101_TRAIN_PER_CLASS:
            small.append(f"{name} ({len(present)})")
    if odd:
        found.problems.append(
            f"{copy.name}: {len(odd)} entries of {categories} are not class folders of image_0001.jpg..image_<n>.jpg "
            f"as torchvision reads them: {'; '.join(odd[:3])} (fix: move stray files out, or {copy.fix})"
        )
    if small:
        found.problems.append(
            f"{copy.name}: {len(small)} classes have {CALTECH101_TRAIN_PER_CLASS} images or fewer, none left to "
            f"evaluate: {', '.join(small[:5])} (fix: {copy.fix})"
        )
    found.classes, found.class_source = len(classes), f"the class folders of {categories} but BACKGROUND_Google"
    found.train = sum(min(CALTECH101_TRAIN_PER_CLASS, size) for size in sizes.values())
    rest = [size - CALTECH101_TRAIN_PER_CLASS for size in sizes.values()]
    found.eval = sum(min(CALTECH101_EVAL_PER_CLASS, max(0, size)) for size in rest)
    found.split_sources = (f"{CALTECH101_TRAIN_PER_CLASS} per class of {categories}", "the rest, at most 50 per class")
    return found
