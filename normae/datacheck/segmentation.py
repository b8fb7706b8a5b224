"""What ADE20K's loader (normae.data.segmentation.ADE20K) reads from disk, read here without torch (for
normae.datacheck.check).

The inspector finds the ADEChallengeData2016 folder as the loader does, counts each split's images,
names the images without an annotation and the annotations without an image (the loader refuses
both), and decodes a seeded sample of pairs as the loader will: the image as RGB, the annotation
as single-channel labels of the image's size, its raw labels within 0..150 or the ignored 255.
Torch-free: standard library, numpy and PIL.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from normae.data.layouts import ON_DISK
from normae.data.registry import DATASETS, IGNORE_INDEX, SEGMENTATION_SETS
from normae.data.registry_files import ADE20K_FOLDER, ade20k_folder
from normae.datacheck.found import Copy, Found

MAX_BAD_PAIRS = 5  # broken pairs named one by one; more are counted


def _stems(folder: Path, suffix: str) -> set[str]:
    """The names (without suffix) of the ``suffix`` files in ``folder``, as the loader lists them."""
    with os.scandir(folder) as entries:
        return {entry.name[: -len(suffix)] for entry in entries if entry.is_file() and entry.name.endswith(suffix)}


def _some(paths: list[Path], limit: int = 3) -> str:
    shown = ", ".join(str(path) for path in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _pair_problem(copy: Copy, image_path: Path, annotation_path: Path) -> str | None:
    """What would make the loader refuse this pair, or None."""
    top = DATASETS[copy.name].num_classes or 0
    if not SEGMENTATION_SETS[copy.name].reduce_zero_label:
        top -= 1
    opened: list[Image.Image] = []
    for path in (image_path, annotation_path):
        try:
            with warnings.catch_warnings():  # EXIF and palette warnings: the image still decodes
                warnings.simplefilter("ignore")
                with Image.open(path) as file:
                    file.load()
                    opened.append(file.convert("RGB") if path == image_path else file.copy())
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, struct.error... on broken bytes
            error_text = f"{type(error).__name__}: {error}"
            return f"{copy.name}: cannot decode {path} ({error_text}) (fix: replace the file: {copy.fix})"
    image, annotation = opened
    if annotation.mode not in ("L", "P"):
        return (
            f"{copy.name}: {annotation_path} is a {annotation.mode} image, not labels (mode L or P) (fix: {copy.fix})"
        )
    if image.size != annotation.size:
        return (
            f"{copy.name}: {image_path} is {image.size[0]} x {image.size[1]} but {annotation_path} is "
            f"{annotation.size[0]} x {annotation.size[1]} (fix: {copy.fix})"
        )
    present = np.flatnonzero(np.bincount(np.asarray(annotation, dtype=np.uint8).ravel(), minlength=256))
    bad = [int(value) for value in present if value > top and value != IGNORE_INDEX]
    if bad:
        return f"{copy.name}: {annotation_path} holds label value(s) {bad[:8]} outside 0..{top} (fix: {copy.fix})"
    return None


def inspect_ade20k(copy: Copy, samples: int, seed: int) -> Found:
    """images/<split>/X.jpg paired with annotations/<split>/X.png, training and validation; ``samples`` pairs
    drawn with random.Random(seed) are decoded and checked."""
    found, layout = Found(), ON_DISK[copy.name]
    base = ade20k_folder(copy.folder)
    splits = [*layout.train, *layout.eval]
    image_kind, annotation_kind = str(layout.images), str(layout.labels)
    wanted = [f"{kind}{split}/" for kind in (image_kind, annotation_kind) for split in splits]
    if base == copy.folder and not (base / image_kind).is_dir():
        found.problems.append(
            copy.lacks(copy.folder, [f"{ADE20K_FOLDER}/ (or {image_kind} and {annotation_kind}, if it is that)"])
        )
        return found
    lacking = [name for name in wanted if not (base / name).is_dir()]
    if lacking:
        found.problems.append(copy.lacks(base, lacking))
        return found
    counts, pairs = [], []
    for split in splits:
        image_dir, annotation_dir = base / image_kind / split, base / annotation_kind / split
        images, annotations = _stems(image_dir, ".jpg"), _stems(annotation_dir, ".png")
        unpaired = (
            ("image(s)", image_dir, "annotation", [image_dir / f"{stem}.jpg" for stem in sorted(images - annotations)]),
            (
                "annotation(s)",
                annotation_dir,
                "image",
                [annotation_dir / f"{s}.png" for s in sorted(annotations - images)],
            ),
        )
        for kind, folder, other, paths in unpaired:
            if paths:
                found.problems.append(
                    f"{copy.name}: {len(paths)} {kind} of {folder} have no {other}, which the loader refuses: "
                    f"{_some(paths)} (fix: {copy.fix})"
                )
        counts.append(len(images))
        pairs += [(image_dir / f"{stem}.jpg", annotation_dir / f"{stem}.png") for stem in sorted(images & annotations)]
    found.train, found.eval = counts
    found.split_sources = (str(base / image_kind / splits[0]), str(base / image_kind / splits[1]))
    drawn = random.Random(seed).sample(pairs, min(samples, len(pairs)))
    problems = [problem for pair in drawn if (problem := _pair_problem(copy, *pair))]
    found.decoded = (
        f"{len(drawn) - len(problems)} of {len(drawn)} sampled image/annotation pairs decode "
        f"(same sizes, labels 0..{DATASETS[copy.name].num_classes} or {IGNORE_INDEX})"
    )
    if len(problems) > MAX_BAD_PAIRS:
        problems = [
            *problems[:MAX_BAD_PAIRS],
            f"{copy.name}: {len(problems) - MAX_BAD_PAIRS} more sampled pairs are broken (fix: {copy.fix})",
        ]
    found.problems += problems
    return found
