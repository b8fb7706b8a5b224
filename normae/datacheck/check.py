"""`normae check-data`: whether a data folder holds the set its loader expects, found in seconds.

A wrong data path otherwise shows after a day in a SLURM queue. ``check_dataset`` reads what the
set's loader would read, without torch (normae.datacheck.image_sets, .arrays, .segmentation):
the layout, the class count, each split's image count against the published size
(normae.data.registry.DATASETS), and whether a seeded sample of the image files decodes with PIL.
A generated rehearsal copy (REHEARSAL_MANIFEST in its folder) has its counts compared with its
manifest's instead, and its line says so.

Torch-free: standard library, numpy, PIL, scipy.io (on demand), and normae.data.registry and
normae.errors; the loaders' modules (normae.data.sources, .classification...) import torch.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from normae.data.registry import (
    DATASETS,
    LAYOUTS,
    REHEARSAL_MANIFEST,
    DatasetFacts,
    fashion_mnist_candidates,
    folder_key,
    holds_fashion_mnist,
)
from normae.datacheck.arrays import inspect_cifar, inspect_fashion_mnist
from normae.datacheck.found import REGENERATE, SOURCES, Copy, Files, Found
from normae.datacheck.image_sets import (
    inspect_aircraft,
    inspect_caltech101,
    inspect_dtd,
    inspect_flowers102,
    inspect_food101,
    inspect_imagenet,
    inspect_pets,
)
from normae.datacheck.segmentation import inspect_ade20k
from normae.errors import ConfigError

INSPECTORS: dict[str, Callable[[Copy, int, int], Found]] = {
    "imagenet1k": inspect_imagenet,
    "imagenet100": inspect_imagenet,
    "fashion_mnist": inspect_fashion_mnist,
    "cifar10": inspect_cifar,
    "cifar100": inspect_cifar,
    "flowers102": inspect_flowers102,
    "pets": inspect_pets,
    "dtd": inspect_dtd,
    "food101": inspect_food101,
    "aircraft": inspect_aircraft,
    "caltech101": inspect_caltech101,
    "ade20k": inspect_ade20k,
}
# The sets that read no folder of their own.
NOTHING_ON_DISK = {
    "generated": "nothing on disk to check: drawn in memory (normae.data.sources.GeneratedImages)",
    "digits": "nothing on disk to check: bundled with scikit-learn",
    "sklearn_samples": "nothing on disk to check: bundled with scikit-learn",
    "fashion_mnist_subset5": "nothing of its own on disk to check: it reads the fashion_mnist files (see that check)",
    "fashion_mnist_canvas": "nothing of its own on disk to check: it reads the fashion_mnist files (see that check)",
}
MAX_UNDECODABLE = 5  # undecodable files named one by one; more are counted
GENERATED = f"GENERATED rehearsal data (counts from {REHEARSAL_MANIFEST}), not the published set"
_NAME_WIDTH = max(len(name) for name in DATASETS)


@dataclass
class DataCheck:
    """The outcome of checking one set's folder."""

    dataset: str
    folder: str | None
    problems: list[str]  # each one line: what is wrong and the fix
    facts: str  # what was found, e.g. "1,000 classes, train 1,281,167, val 50,000, 32 of 32 sampled files decode"
    generated: bool = False  # counts came from the rehearsal manifest

    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """One line of a table of sets: ``ok    <set>  <folder>  <facts>`` or ``FAIL  <set>  <folder>  <count>``;
        the problems themselves are listed once, below the table (distinct_problems)."""
        text = self.facts if self.ok() else f"{len(self.problems)} problem(s), listed below"
        if self.generated:
            text = f"{GENERATED}: {text}"
        status = "ok" if self.ok() else "FAIL"
        return f"{status:<6}{self.dataset:<{_NAME_WIDTH}}  {self.folder or '-'}  {text}"


def distinct_problems(checks: list[DataCheck]) -> list[str]:
    """Every problem once, naming each set it concerns: ImageNet-100 is read from the imagenet1k folder, so
    an unset or broken folder is one problem of both (worded with the fix of the set the key is named after)."""
    found: dict[tuple, tuple[list[str], str]] = {}  # (data map key, what is wrong) -> (the sets, problem and fix)
    for check in checks:
        for problem in check.problems:
            body = problem.removeprefix(f"{check.dataset}: ")
            what = (folder_key(check.dataset) or check.dataset, body.split(" (fix: ")[0])
            names, text = found.setdefault(what, ([], body))
            names.append(check.dataset)
            if folder_key(check.dataset) == check.dataset:
                found[what] = (names, body)
    return [f"{', '.join(names)}: {text}" for names, text in found.values()]


@dataclass
class _Expected:
    """The split sizes a copy is compared with: the published ones, or a rehearsal copy's manifest's."""

    train: int | None
    eval: int | None
    generated: bool = False
    problems: list[str] = field(default_factory=list)
    note: str | None = None


def _how_to_set(name: str) -> str:
    """The fix for a folder that is not set or wrong, under the data map's key (ImageNet-100: imagenet1k's)."""
    key = folder_key(name) or name
    fetch = f"; or {SOURCES[name]}" if name in ("fashion_mnist", "ade20k") else ""
    return (
        f"(fix: set data.{key} in config/config.yaml, or --config data='{{{key}: /path}}' on the snakemake "
        f"command line, or --data {key}=/path for normae commands{fetch}; expected layout: {LAYOUTS[name]})"
    )


def _find_fashion_mnist() -> tuple[Path | None, str]:
    """Where the loaders look for Fashion-MNIST without a folder (normae.data.sources.find_fashion_mnist), in order."""
    candidates = fashion_mnist_candidates()
    for folder, where in candidates:
        if holds_fashion_mnist(folder):
            return folder, where
    return None, ", ".join(str(folder) for folder, _ in candidates)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _expected(name: str, folder: Path) -> _Expected:
    """The published split sizes, or those of the rehearsal manifest in ``folder``.

    The ImageNet-1K folder read as ImageNet-100 may carry an ImageNet-1K manifest: then only the
    100 wnids' presence (with an image in each split) is checked, not their counts.
    """
    facts = DATASETS[name]
    path = folder / REHEARSAL_MANIFEST
    if not path.is_file():
        return _Expected(facts.train_images, facts.eval_images)
    fix = f"(fix: {REGENERATE}; or, for a published copy, remove {path})"
    try:
        manifest = json.loads(path.read_text())
        described = manifest["dataset"]
        counts = [manifest[key] for key in ("num_classes", "train_images", "eval_images")]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return _Expected(None, None, True, [f"{name}: cannot read the rehearsal manifest {path} ({error!r}) {fix}"])
    if not (isinstance(described, str) and all(_is_count(count) for count in counts)):
        problem = f"{name}: {path} needs a dataset name and counts num_classes, train_images, eval_images {fix}"
        return _Expected(None, None, True, [problem])
    num_classes, train, evaluate = counts
    if described == name:
        expected = _Expected(train, evaluate, True)
        if num_classes != facts.num_classes:
            expected.problems.append(
                f"{name}: {path} says {num_classes} classes, the published set (and so the models' heads) has "
                f"{facts.num_classes} {fix}"
            )
        return expected
    if name == "imagenet100" and described == "imagenet1k":
        return _Expected(None, None, True, note="the ImageNet-100 classes of a generated ImageNet-1K copy")
    problem = f"{name}: {path} describes {described}, not {name}: data.{folder_key(name)} names another set's folder"
    problem += f" {_how_to_set(name)}"
    return _Expected(None, None, True, [problem])


def _split_labels(facts: DatasetFacts) -> list[str]:
    """The splits' names where they are short ("train", "val", "train+val"), else train and eval."""
    names = (facts.train_split_name, facts.eval_split_name)
    return [name if name and " " not in name else default for name, default in zip(names, ("train", "eval"))]


def _class_problems(copy: Copy, found: Found) -> list[str]:
    expected = DATASETS[copy.name].num_classes
    if found.classes_checked or found.classes is None or expected is None or found.classes == expected:
        return []
    return [
        f"{copy.name}: {found.classes:,} classes in {found.class_source}, the published set (and so the models' "
        f"heads) has {expected:,} (fix: {copy.fix})"
    ]


def _count_problems(copy: Copy, found: Found, expected: _Expected) -> list[str]:
    """Each split whose image count differs from the expected one: compared exactly."""
    problems = []
    labels = _split_labels(DATASETS[copy.name])
    splits = zip(labels, (found.train, found.eval), (expected.train, expected.eval), found.split_sources)
    for label, count, wanted, source in splits:
        if count is None or wanted is None or count == wanted:
            continue
        reference = f"{REHEARSAL_MANIFEST} says" if expected.generated else "the published split has"
        guess = "an incomplete copy?" if count < wanted else "files from elsewhere mixed in?"
        problems.append(
            f"{copy.name}: {label} ({source}) has {count:,} images, {reference} {wanted:,}: {guess} (fix: {copy.fix})"
        )
    return problems


def _decode_sample(copy: Copy, files: Files, samples: int, seed: int) -> tuple[str, list[str]]:
    """Opens and loads (as the loaders do, converting to RGB) ``samples`` files drawn with random.Random(seed)."""
    drawn = files.draw(samples, seed)
    problems = []
    for path in drawn:
        try:
            with warnings.catch_warnings():  # EXIF and palette warnings: the image still decodes
                warnings.simplefilter("ignore")
                with Image.open(path) as image:
                    image.load()
                    image.convert("RGB")
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, struct.error... on broken bytes
            problems.append(
                f"{copy.name}: cannot decode {path} ({type(error).__name__}: {error}) "
                f"(fix: replace the file: {copy.fix})"
            )
    fact = f"{len(drawn) - len(problems)} of {len(drawn)} sampled files decode"
    if len(problems) > MAX_UNDECODABLE:  # a folder of garbage: the first few files say enough
        more = f"{copy.name}: {len(problems) - MAX_UNDECODABLE} more sampled files do not decode (fix: {copy.fix})"
        problems = [*problems[:MAX_UNDECODABLE], more]
    return fact, problems


def _facts(name: str, found: Found, decoded: str, notes: list[str]) -> str:
    parts = [f"{found.classes:,} classes"] if found.classes is not None else []
    for label, count in zip(_split_labels(DATASETS[name]), (found.train, found.eval)):
        if count is not None:
            parts.append(f"{label} {count:,}")
    return ", ".join([*parts, decoded, *found.notes, *notes])


def check_dataset(name: str, folder: str | None, samples: int = 32, seed: int = 0) -> DataCheck:
    """Check the folder of set ``name`` as its loader will read it; ``samples`` image files are decoded.

    A folder of None is "not set" (for fashion_mnist: looked for where the loaders look). Problems
    are returned, not raised; an unknown set name raises ConfigError.
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    if name not in INSPECTORS:
        return DataCheck(name, folder, [], NOTHING_ON_DISK[name])
    notes = []
    if folder is None and name == "fashion_mnist":
        looked_up, where = _find_fashion_mnist()
        if looked_up is None:
            return DataCheck(name, None, [f"{name}: no folder set, and none in {where} {_how_to_set(name)}"], "")
        folder = str(looked_up)
        notes.append(f"no folder set: found through {where}")
    if folder is None:
        return DataCheck(name, None, [f"{name}: no data folder set {_how_to_set(name)}"], "")
    path = Path(folder)
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        return DataCheck(name, folder, [f"{name}: the data folder {folder} {state} {_how_to_set(name)}"], "")
    expected = _expected(name, path)
    copy = Copy(name, path, expected.generated)
    problems = list(expected.problems)
    try:
        found = INSPECTORS[name](copy, samples, seed)
    except (OSError, ValueError) as error:  # an unreadable folder or file, a label file that is no text
        problems.append(f"{name}: cannot read {folder} ({error!r}) (fix: {copy.fix})")
        return DataCheck(name, folder, problems, "", expected.generated)
    problems += found.problems + _class_problems(copy, found) + _count_problems(copy, found, expected)
    decoded = found.decoded
    if decoded is None:
        decoded, undecodable = _decode_sample(copy, found.files, samples, seed)
        problems += undecodable
    if expected.note:
        notes.append(expected.note)
    return DataCheck(name, folder, problems, _facts(name, found, decoded, notes), expected.generated)
