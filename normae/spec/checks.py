"""The checks every spec passes before anything runs: each field against its annotated type, and the
value ranges that make a run meaningful (torch-free; ``normae.spec`` calls them from ``__post_init__``).

Each check returns one line per problem, naming the field; the spec joins them into one ConfigError.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Literal, get_args

from normae.data.registry import DATASETS

TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", type(None): "null"}


def _shown(value) -> str:
    """A value as a spec file spells it (true, null, "no")."""
    return json.dumps(value, default=repr)


def _describe(hint) -> str:
    """What a field of type ``hint`` holds, in words."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(_shown(choice) for choice in get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in get_args(hint))
    return TYPE_WORDS[hint]


def _matches(hint, value) -> bool:
    """Whether ``value`` is of type ``hint``: a bool is no number, an int is a float, a float is finite."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return isinstance(value, str) and value in get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(arg, value) for arg in get_args(hint))
    if hint in (bool, str, type(None)):
        return isinstance(value, hint)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    raise TypeError(f"normae.spec has no type check for {hint!r}")  # a new kind of field: add it above


def type_problems(spec) -> list[str]:
    """One line per field whose value is not of the field's annotated type, naming the field.

    Every spec is checked, however it was made (a spec file, the command line, the planner). No value is
    converted, so a valid spec keeps its digest (``lam: 0`` and ``lam: 0.0`` stay apart, as before).
    """
    hints = typing.get_type_hints(type(spec))
    return [
        f"{f.name} must be {_describe(hints[f.name])}, got {_shown(getattr(spec, f.name))}"
        for f in dataclasses.fields(spec)
        if not _matches(hints[f.name], getattr(spec, f.name))
    ]


def at_least(spec, minimum, *names: str) -> list[str]:
    """The fields of ``names`` below ``minimum`` (None, where a field allows it, is not checked)."""
    values = {name: getattr(spec, name) for name in names}
    return [
        f"{name} must be at least {minimum}, got {value}"
        for name, value in values.items()
        if value is not None and value < minimum
    ]


# The seeds every generator takes: NumPy's legacy seed (timm's Mixup draws from it) must be in [0, 2**32);
# torch.manual_seed overflows past 2**64 (a seed of 2**70 failed in the run, after its folder was locked).
SEED_RANGE = (0, 2**32)


def seed_problems(value, name: str = "seed") -> list[str]:
    """``value`` outside SEED_RANGE, as a problem line naming ``name`` (a spec field or a command's option)."""
    low, high = SEED_RANGE
    if isinstance(value, int) and not isinstance(value, bool) and not low <= value < high:
        return [f"{name} must be in [{low}, 2**32), got {value}"]
    return []


def within(spec, name: str, low: float, high: float, closed: bool = False) -> list[str]:
    """``name`` outside [low, high) (or [low, high] if ``closed``)."""
    value = getattr(spec, name)
    inside = low <= value < high or (closed and value == high)
    return [] if inside else [f"{name} must be in [{low}, {high}{']' if closed else ')'}, got {value}"]


def common_problems(spec) -> list[str]:
    """Checks on the fields every stage has: sizes, counts and the optimisation settings."""
    problems = at_least(spec, 1, "epochs", "batch_size", "accum_iter", "patch_size", "log_every")
    problems += at_least(spec, 1, "img_size", "train_samples")
    if spec.img_size is not None and spec.img_size >= 1 and spec.patch_size >= 1 and spec.img_size % spec.patch_size:
        problems.append(f"patch_size {spec.patch_size} does not divide img_size {spec.img_size}")
    step = spec.batch_size * spec.accum_iter
    if spec.train_samples is not None and 1 <= spec.train_samples < step:
        problems.append(
            f"train_samples {spec.train_samples} cannot fill one step of batch_size x accum_iter = {step} images: "
            "lower the batch size or use more data"
        )
    if spec.warmup_epochs < 0 or spec.warmup_epochs > spec.epochs:
        problems.append(f"warmup_epochs must be within [0, epochs], got {spec.warmup_epochs}")
    for name in ("blr", "lr", "clip_grad"):
        value = getattr(spec, name)
        if value is not None and value <= 0:
            problems.append(f"{name} must be positive, got {value}")
    problems += at_least(spec, 0, "min_lr", "weight_decay", "num_workers", "checkpoint_minutes")
    return problems


def masking_problems(spec) -> list[str]:
    """MAE and NoR-MAE learn from removed patches and see visible ones: at least one of each, where the model
    keeps ``int(tokens x (1 - mask_ratio))`` patches (``normae.core.model.random_masking``)."""
    if not 0 < spec.mask_ratio < 1:
        return [f"mask_ratio must be in (0, 1): at least one patch removed and one visible, got {spec.mask_ratio}"]
    if spec.img_size is None and spec.dataset not in DATASETS:
        return []  # the token count is unknown here (the data set is refused on its own)
    img_size = spec.image_size
    if not img_size or spec.patch_size < 1 or img_size % spec.patch_size:
        return []  # the token count is unknown here (or the patch size is wrong, reported on its own)
    tokens = (img_size // spec.patch_size) ** 2
    kept = int(tokens * (1 - spec.mask_ratio))
    grid = f"the {tokens} patches of {img_size} px at patch_size {spec.patch_size}"
    if kept < 1:
        return [f"mask_ratio {spec.mask_ratio} leaves no visible patch of {grid}"]
    if kept >= tokens:
        return [f"mask_ratio {spec.mask_ratio} removes no patch of {grid}"]
    return []


def authors_code_problems(cnp: str, cnp_wrap: bool, img_size: int, patch_size: int) -> list[str]:
    """The authors' CNP selection (``cnp`` authors_code) lists each token's 8 torus neighbours: it needs
    the torus border and a grid of at least 8 tokens with both sides at least 2 (``normae.core.cnp``)."""
    if cnp != "authors_code" or patch_size < 1:
        return []
    problems = (
        []
        if cnp_wrap
        else ["cnp authors_code always uses the torus border, as the public code does: keep cnp_wrap true"]
    )
    side = img_size // patch_size
    if side < 2 or side * side < 8:
        grid = f"{side}x{side} patches of {img_size} px at patch_size {patch_size}"
        problems.append(f"cnp authors_code needs a grid of at least 8 tokens with sides >= 2, got {grid}")
    return problems
