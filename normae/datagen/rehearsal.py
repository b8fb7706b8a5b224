"""Generated data in the real on-disk formats, for a dress rehearsal of the paper-scale pipeline.

``write_rehearsal_data(root)`` writes a miniature ImageNet-1K (ILSVRC2012) tree with all 1000 real
wnids, miniature copies of the eight downstream sets in the layouts torchvision reads and a
miniature ADE20K (ADEChallengeData2016: JPEG pictures, PNG label maps of raw labels 0..150), so that
the project's real loaders (normae.data.pretrain, .classification, .segmentation) and everything
above them run on a CPU machine without the published data. The pictures are smooth colour fields
with one sharp-edged blob each; like the real ImageNet, a few JPEGs are grayscale or CMYK and one
file named ``.JPEG`` is a PNG, in train and val, in ImageNet-100 classes and others.

Every configured folder holds a manifest (``REHEARSAL_MANIFEST``) naming the set, its class count
and the split sizes the loaders will see. The same seed gives the same bytes.

Torch-free: standard library, numpy and PIL (scipy.io, for Flowers-102's .mat files, on demand).
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from normae.data.layouts import ON_DISK
from normae.data.registry import (
    REHEARSAL_MANIFEST,
    imagenet1k_wnids,
    read_class_file,
)
from normae.errors import ConfigError

JPEG_QUALITY = 50
IMAGENET_SIDES = (150, 500)  # each side of an ImageNet picture is drawn from this range
DOWNSTREAM_SIDES = (64, 200)
CALTECH101_SIDES = (64, 160)
CALTECH101_BACKGROUND_IMAGES = 3  # BACKGROUND_Google, which the loader leaves out
# The odd files of the real ImageNet, each the first image (train and val) of the classes at these
# positions: of the sorted ImageNet-1K wnids, then of the sorted ImageNet-100 wnids.
ODD_FILES_IN1K = {0: "gray", 1: "cmyk", 2: "png"}
ODD_FILES_IN100 = {0: "gray", 1: "cmyk", 2: "png", 5: "gray", 6: "cmyk"}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# The four Caltech-101 classes whose annotation folders torchvision renames; the rest are made up.
CALTECH101_NAMED = ["Faces", "Faces_easy", "Motorbikes", "airplanes"]
# (width, height) of the ADE20K pictures, in turn: a landscape and a portrait one, as most of ADE20K's.
ADE20K_SIZES = ((500, 375), (375, 500))
ADE20K_PAIRS_PER_UNIT = {"train": 4, "eval": 2}  # times train_per_class, eval_per_class


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1K wnids (normae.data.registry); an error without timm, whose list they come from."""
    wnids = imagenet1k_wnids()
    if wnids is None:
        raise FileNotFoundError("timm is not installed: its data/_info/imagenet_synsets.txt lists the wnids")
    return wnids


def draw_image(rng: np.random.Generator, sides: tuple[int, int]) -> Image.Image:
    """A natural-ish RGB picture: a coarse colour gradient, finer blobs over it and one sharp-edged ellipse."""
    width, height = (int(side) for side in rng.integers(sides[0], sides[1] + 1, size=2))
    coarse = rng.integers(0, 256, (int(rng.integers(2, 4)), int(rng.integers(2, 4)), 3), dtype=np.uint8)
    fine = rng.integers(0, 256, (int(rng.integers(5, 12)), int(rng.integers(5, 12)), 3), dtype=np.uint8)
    base = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
    detail = Image.fromarray(fine).resize((width, height), Image.Resampling.BICUBIC)
    image = Image.blend(base, detail, float(rng.uniform(0.2, 0.5)))
    x0, x1 = sorted(int(x) for x in rng.integers(0, width, size=2))
    y0, y1 = sorted(int(y) for y in rng.integers(0, height, size=2))
    color = tuple(int(c) for c in rng.integers(0, 256, size=3))
    ImageDraw.Draw(image).ellipse((x0, y0, x1 + 1, y1 + 1), fill=color)
    return image


def _save(image: Image.Image, path: Path, kind: str = "rgb") -> None:
    """Write ``image`` to ``path`` as an RGB, grayscale (gray) or CMYK (cmyk) JPEG, or as a PNG (png)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "png":
        image.save(path, format="PNG")
        return
    mode = {"rgb": "RGB", "gray": "L", "cmyk": "CMYK"}[kind]
    image.convert(mode).save(path, format="JPEG", quality=JPEG_QUALITY)


def _write_manifest(folder: Path, dataset: str, num_classes: int, train_images: int, eval_images: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "dataset": dataset,
        "generated_by": __name__,
        "num_classes": num_classes,
        "train_images": train_images,
        "eval_images": eval_images,
    }
    (folder / REHEARSAL_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def _lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


# ---------------------------------------------------------------- ImageNet-1K


def _write_imagenet(folder: Path, rng: np.random.Generator, train_per_class: int, eval_per_class: int) -> Path:
    wnids = imagenet_wnids()
    odd = {wnids[position]: kind for position, kind in ODD_FILES_IN1K.items()}
    subset = read_class_file()
    odd.update({subset[position]: kind for position, kind in ODD_FILES_IN100.items()})
    # Validation images are numbered 1..N over all classes in a random order, as ILSVRC2012's are.
    val_numbers = iter(int(number) for number in rng.permutation(len(wnids) * eval_per_class) + 1)
    layout = ON_DISK["imagenet1k"]
    train, val = folder / layout.folder / layout.train[0], folder / layout.folder / layout.eval[0]
    for wnid in wnids:
        numbers = sorted(int(n) for n in rng.choice(np.arange(1, 20_000), train_per_class, replace=False))
        for index, number in enumerate(numbers):
            path = train / wnid / f"{wnid}_{number}.JPEG"
            _save(draw_image(rng, IMAGENET_SIDES), path, odd.get(wnid, "rgb") if index == 0 else "rgb")
        for index in range(eval_per_class):
            path = val / wnid / f"ILSVRC2012_val_{next(val_numbers):08d}.JPEG"
            _save(draw_image(rng, IMAGENET_SIDES), path, odd.get(wnid, "rgb") if index == 0 else "rgb")
    return _write_manifest(folder, "imagenet1k", len(wnids), len(wnids) * train_per_class, len(wnids) * eval_per_class)


# ---------------------------------------------------------------- CIFAR-10 and CIFAR-100


def _cifar_batch(rng: np.random.Generator, labels: list[int], label_key: str, batch_label: str) -> bytes:
    pixels = [np.asarray(draw_image(rng, (32, 32))).transpose(2, 0, 1).reshape(-1) for _ in labels]
    data = np.stack(pixels) if pixels else np.zeros((0, 3072), np.uint8)
    batch = {
        "batch_label": batch_label,
        label_key: labels,
        "data": data.astype(np.uint8),
        "filenames": [f"rehearsal_{index:05d}.png" for index in range(len(labels))],
    }
    if label_key == "fine_labels":
        batch["coarse_labels"] = [label // 5 for label in labels]
    return pickle.dumps(batch, protocol=2)


def _write_cifar10(root: Path, rng: np.random.Generator, train: int, evaluate: int) -> Path:
    layout = ON_DISK["cifar10"]
    base = root / layout.folder
    base.mkdir(parents=True, exist_ok=True)
    labels = [label for _ in range(train) for label in range(10)]
    batches = len(layout.train)
    for number, name in enumerate(layout.train, 1):  # the training images dealt over the batches
        batch = _cifar_batch(rng, labels[number - 1 :: batches], "labels", f"training batch {number} of {batches}")
        (base / name).write_bytes(batch)
    test_labels = [label for _ in range(evaluate) for label in range(10)]
    (base / layout.eval[0]).write_bytes(_cifar_batch(rng, test_labels, "labels", "testing batch 1 of 1"))
    meta = {"num_cases_per_batch": len(labels) // batches, "label_names": CIFAR10_CLASSES, "num_vis": 3072}
    (base / str(layout.labels)).write_bytes(pickle.dumps(meta, protocol=2))
    return _write_manifest(root, "cifar10", 10, len(labels), len(test_labels))


def _write_cifar100(root: Path, rng: np.random.Generator, train: int, evaluate: int) -> Path:
    layout = ON_DISK["cifar100"]
    base = root / layout.folder
    base.mkdir(parents=True, exist_ok=True)
    for name, per_class in ((layout.train[0], train), (layout.eval[0], evaluate)):
        labels = [label for _ in range(per_class) for label in range(100)]
        (base / name).write_bytes(_cifar_batch(rng, labels, "fine_labels", name))
    meta = {
        "fine_label_names": [f"fine_{label:02d}" for label in range(100)],
        "coarse_label_names": [f"coarse_{label:02d}" for label in range(20)],
    }
    (base / str(layout.labels)).write_bytes(pickle.dumps(meta, protocol=2))
    return _write_manifest(root, "cifar100", 100, 100 * train, 100 * evaluate)


# ---------------------------------------------------------------- the sets of image files


def _savemat(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """scipy.io.savemat with a fixed header text: savemat's names the time of writing."""
    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, arrays)
    header = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: normae.datagen.rehearsal".ljust(116)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + buffer.getvalue()[116:])


def _write_flowers102(root: Path, rng: np.random.Generator, train: int, evaluate: int) -> Path:
    """trnid and valid (joined by the loader's train split) each hold ``train`` images per class."""
    layout = ON_DISK["flowers102"]
    base = root / layout.folder
    counts = {**dict.fromkeys(layout.train, train), **dict.fromkeys(layout.eval, evaluate)}
    labels = np.array([label for count in counts.values() for _ in range(count) for label in range(1, 103)])
    ids = rng.permutation(len(labels)) + 1  # image ids 1..N, dealt to the splits in a random order
    image_labels = np.zeros(len(labels), np.uint8)
    image_labels[ids - 1] = labels
    for image_id in range(1, len(labels) + 1):
        _save(draw_image(rng, DOWNSTREAM_SIDES), base / str(layout.images) / str(layout.image_name).format(image_id))
    _savemat(base / str(layout.labels), {"labels": image_labels[None, :]})
    bounds = np.cumsum([0] + [102 * count for count in counts.values()])
    split_ids = {
        key: np.sort(ids[bounds[i] : bounds[i + 1]]).astype(np.uint16)[None, :] for i, key in enumerate(counts)
    }
    _savemat(base / str(layout.split_file), split_ids)
    return _write_manifest(root, "flowers102", 102, 2 * 102 * train, 102 * evaluate)


def _write_pets(root: Path, rng: np.random.Generator, train: int, evaluate: int) -> Path:
    # Cat breeds are capitalised, dog breeds not, and names hold underscores, as the real ones do.
    breeds = [f"Cat_breed_{i:02d}" if i < 12 else f"dog_breed_{i:02d}" for i in range(37)]
    layout = ON_DISK["pets"]
    base = root / layout.folder
    number = 0
    for split_file, per_class in ((layout.train[0], train), (layout.eval[0], evaluate)):
        rows = []
        for class_id, breed in enumerate(breeds, 1):
            species, breed_id = (1, class_id) if class_id <= 12 else (2, class_id - 12)
            for _ in range(per_class):
                number += 1
                _save(draw_image(rng, DOWNSTREAM_SIDES), base / str(layout.images) / f"{breed}_{number}.jpg")
                rows.append(f"{breed}_{number} {class_id} {species} {breed_id}")
        _lines(base / split_file, rows)
    (base / "annotations" / "trimaps").mkdir(exist_ok=True)  # in the archive, unread by the loader
    return _write_manifest(root, "pets", 37, 37 * train, 37 * evaluate)


def _write_dtd(root: Path, rng: np.random.Generator, train: int, evaluate: int) -> Path:
    """Partition 1 only; train1 and val1 (joined by the loader's train split) each hold ``train`` per class."""
    layout = ON_DISK["dtd"]
    data = root / layout.folder
    textures = [f"texture{i:02d}" for i in range(47)]
    number = 0
    splits = [(split_file, train) for split_file in layout.train] + [
        (split_file, evaluate) for split_file in layout.eval
    ]
    for split_file, per_class in splits:
        rows = []
        for texture in textures:
            for _ in range(per_class):
                number += 1
                rows.append(f"{texture}/{texture}_{number:04d}.jpg")
                _save(draw_image(rng, DOWNSTREAM_SIDES), data / str(layout.images) / rows[-1])
        _lines(data / split_file, rows)
    return _write_manifest(root, "dtd", 47, 2 * 47 * train, 47 * evaluate)


def _write_food101(root: Path, rng: np.random.Generator, train: int, evaluate: int) -> Path:
    layout = ON_DISK["food101"]
    base = root / layout.folder
    foods = [f"food_{i:03d}" for i in range(101)]
    ids = iter(int(n) for n in rng.choice(np.arange(1, 4_000_000), 101 * (train + evaluate), replace=False))
    for split_file, per_class in ((base / layout.train[0], train), (base / layout.eval[0], evaluate)):
        metadata = {food: [f"{food}/{next(ids)}" for _ in range(per_class)] for food in foods}
        for images in metadata.values():
            for image in images:
                _save(draw_image(rng, DOWNSTREAM_SIDES), base / str(layout.images) / f"{image}.jpg")
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.write_text(json.dumps(metadata))
        # The archive's text lists beside the JSON ones (the loader reads the JSON).
        _lines(split_file.with_suffix(".txt"), [image for images in metadata.values() for image in images])
    _lines((base / layout.train[0]).parent / "classes.txt", foods)
    return _write_manifest(root, "food101", 101, 101 * train, 101 * evaluate)


def _write_aircraft(root: Path, rng: np.random.Generator, train: int, evaluate: int) -> Path:
    layout = ON_DISK["aircraft"]
    data = root / layout.folder
    variants = [f"Variant {i:03d}" for i in range(100)]  # with a space, as "Cessna 172" has
    _lines(data / str(layout.labels), variants)
    ids = iter(int(n) for n in rng.choice(np.arange(10_000, 3_000_000), 100 * (train + evaluate), replace=False))
    for split_file, per_class in ((layout.train[0], train), (layout.eval[0], evaluate)):
        rows = []
        for variant in variants:
            for _ in range(per_class):
                image_id = f"{next(ids):07d}"
                _save(draw_image(rng, DOWNSTREAM_SIDES), data / str(layout.images) / f"{image_id}.jpg")
                rows.append(f"{image_id} {variant}")
        _lines(data / split_file, rows)
    return _write_manifest(root, "aircraft", 100, 100 * train, 100 * evaluate)


def _write_caltech101(root: Path, rng: np.random.Generator, train: int, evaluate: int) -> Path:
    """The per-class split's training images + ``evaluate`` per class, as caltech101_split needs; ``train`` is
    not used. Image 1 of the first class is grayscale, as some of the real ones are.
    """
    layout = ON_DISK["caltech101"]
    categories, split = root / layout.folder, layout.per_class
    assert split is not None, "caltech101's layout splits each class"
    classes = CALTECH101_NAMED + [f"category_{i:03d}" for i in range(101 - len(CALTECH101_NAMED))]
    per_class = split.train + evaluate
    folders = [(str(layout.left_out), CALTECH101_BACKGROUND_IMAGES)] + [(name, per_class) for name in classes]
    for name, count in folders:
        for number in range(1, count + 1):
            kind = "gray" if (name, number) == (classes[0], 1) else "rgb"
            _save(draw_image(rng, CALTECH101_SIDES), categories / name / str(layout.image_name).format(number), kind)
    train_images, eval_images = (101 * count for count in split.sizes(per_class))
    return _write_manifest(root, "caltech101", 101, train_images, eval_images)


def _ade20k_pair(
    rng: np.random.Generator, palette: np.ndarray, size: tuple[int, int]
) -> tuple[Image.Image, Image.Image]:
    """A picture and its label map (mode L): a few ellipses and boxes of raw labels 1..150 over one of them,
    and 20-pixel boxes of 0 ("other") and 150 in two corners; each label its palette colour, textured."""
    width, height = size
    labels = Image.new("L", size, int(rng.integers(1, 151)))
    draw = ImageDraw.Draw(labels)
    for value in rng.integers(1, 151, size=int(rng.integers(3, 7))):
        x0, x1 = sorted(int(x) for x in rng.integers(0, width, size=2))
        y0, y1 = sorted(int(y) for y in rng.integers(0, height, size=2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1 + 1, y1 + 1), fill=int(value))
    draw.rectangle((0, 0, 19, 19), fill=0)
    draw.rectangle((width - 20, height - 20, width - 1, height - 1), fill=150)
    picture = Image.fromarray(palette[np.asarray(labels)])
    texture = draw_image(rng, (32, 64)).resize(size, Image.Resampling.BILINEAR)
    return Image.blend(picture, texture, 0.3), labels


def _write_ade20k(root: Path, rng: np.random.Generator, train: int, evaluate: int) -> Path:
    """4 * ``train`` training and 2 * ``evaluate`` validation pairs under root/ADEChallengeData2016."""
    layout = ON_DISK["ade20k"]
    base = root / layout.folder
    images, annotations = base / str(layout.images), base / str(layout.labels)
    palette = rng.integers(0, 256, (151, 3), dtype=np.uint8)
    per_class = {"train": train, "eval": evaluate}
    counts = {split: ADE20K_PAIRS_PER_UNIT[split] * per_class[split] for split in per_class}
    for split, (folder,) in layout.split_files().items():
        prefix = "ADE_train" if split == "train" else "ADE_val"
        for number in range(1, counts[split] + 1):
            picture, labels = _ade20k_pair(rng, palette, ADE20K_SIZES[number % len(ADE20K_SIZES)])
            _save(picture, images / folder / f"{prefix}_{number:08d}.jpg")
            (annotations / folder).mkdir(parents=True, exist_ok=True)
            labels.save(annotations / folder / f"{prefix}_{number:08d}.png", format="PNG")
    return _write_manifest(root, "ade20k", 150, counts["train"], counts["eval"])


_DOWNSTREAM: dict[str, Callable[[Path, np.random.Generator, int, int], Path]] = {
    "cifar10": _write_cifar10,
    "cifar100": _write_cifar100,
    "flowers102": _write_flowers102,
    "pets": _write_pets,
    "dtd": _write_dtd,
    "food101": _write_food101,
    "aircraft": _write_aircraft,
    "caltech101": _write_caltech101,
    "ade20k": _write_ade20k,
}


def write_rehearsal_set(
    name: str, root: Path, train_per_class: int = 1, eval_per_class: int = 1, seed: int = 0
) -> Path:
    """One downstream set's (or ADE20K's) miniature copy under ``root``, the folder to configure for it: the
    bytes write_rehearsal_data writes under ``root/downstream/<name>`` with the same counts and seed."""
    index = list(_DOWNSTREAM).index(name) + 1
    return _DOWNSTREAM[name](Path(root), np.random.default_rng([seed, index]), train_per_class, eval_per_class)


def check_rehearsal_options(root: Path, train_per_class: int, eval_per_class: int, overwrite: bool) -> None:
    """Refuse, before anything is written, counts below one and an ``root`` that is a file or (unless
    ``overwrite``) a folder that already holds something."""
    for name, count in (("train-per-class", train_per_class), ("eval-per-class", eval_per_class)):
        if count < 1:
            raise ConfigError(f"--{name} must be at least 1, got {count}")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out {root} is a file, not a folder: give a new or empty folder")
    if root.is_dir() and not overwrite and any(root.iterdir()):
        raise ConfigError(
            f"--out {root} is not empty: give a new or empty folder, or --overwrite to write over its files"
        )


def write_rehearsal_data(
    root: Path, train_per_class: int = 2, eval_per_class: int = 1, seed: int = 0, overwrite: bool = False
) -> dict[str, Path]:
    """Write the rehearsal data under ``root``; returns each set's name -> the folder to configure for it.

    ``root/imagenet`` (the ImageNet-1K tree, also read as ImageNet-100) and ``root/downstream/<name>``
    (the root torchvision is given for that set; ADE20K's holds ADEChallengeData2016). Each set gets
    ``train_per_class`` images per class in its train split (in each of train and val where the loader
    joins the two: Flowers-102, DTD) and ``eval_per_class`` in its eval split; Caltech-101 gets 30 +
    ``eval_per_class`` per class, ADE20K 4 * ``train_per_class`` training and 2 * ``eval_per_class``
    validation pairs. ``root`` must be missing or an empty folder unless ``overwrite``: then files already
    there are overwritten and nothing else is removed (a user's own files would be mixed in or replaced).
    """
    root = Path(root)
    check_rehearsal_options(root, train_per_class, eval_per_class, overwrite)
    imagenet = _write_imagenet(root / "imagenet", np.random.default_rng([seed, 0]), train_per_class, eval_per_class)
    folders = {"imagenet1k": imagenet, "imagenet100": imagenet}
    for name in _DOWNSTREAM:
        folders[name] = write_rehearsal_set(name, root / "downstream" / name, train_per_class, eval_per_class, seed)
    return folders
