"""A run's inputs, fingerprinted once: what the run is made from, as one digest each (torch-free).

``run_inputs(spec)`` is the one function every stage (``Stage.inputs``) and ``normae launch`` use:

- ``spec``: the spec's digest (a checkpoint of another spec, left in a folder without spec.json, is
  never resumed);
- ``upstream``: the SHA-256 of the checkpoint file ``--init`` names (an evaluation's encoder);
- ``teacher``: the SHA-256 of DMAE's ``--teacher`` checkpoint file;
- ``data``: a cheap identity of the data folder the run reads (``data_fingerprint``).

Each is None where the run has no such input (or it cannot be found: the stage then says what is
missing). Checkpoints and summaries record them (``inputs``); ``input_changes`` compares a record
with the current values. What a record does not hold (a checkpoint or summary from before an input
was fingerprinted) is *unrecorded*: it counts as unchanged, so that an old finished run is not
re-run for want of a fingerprint; a recorded None against a value now (e.g. an upstream recorded as
unknown) is a change.

An upstream (``--init``, ``--teacher``) that is one of our run folders, or a file in one, must be
finished (``finished_upstream``): until its summary.json is there, its checkpoint is some epoch of a
run still going.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from normae.data.registry import fashion_mnist_candidates, folder_key, holds_fashion_mnist
from normae.errors import CheckpointError
from normae.paths import RunFolder
from normae.spec import DISTILLED_METHODS

INPUT_KEYS = ("spec", "upstream", "teacher", "data")


def run_inputs(spec) -> dict[str, str | None]:
    """The run's inputs, one digest each (``INPUT_KEYS``); see the module's docstring."""
    init = getattr(spec, "init", "none")
    teacher = getattr(spec, "teacher", None) if getattr(spec, "method", None) in DISTILLED_METHODS else None
    return {
        "spec": spec.digest(),
        "upstream": file_digest(finished_upstream(init, "init")) if init != "none" else None,
        "teacher": file_digest(finished_upstream(teacher, "--teacher")) if teacher else None,
        "data": data_fingerprint(data_folder(spec)),
    }


def finished_upstream(given: str, option: str) -> Path:
    """The checkpoint file ``given`` (a checkpoint file or a run folder) names; refused if it belongs to an
    unfinished run of ours (one with a spec.json and no readable summary.json). ``option`` names it."""
    path = Path(given)
    folder = RunFolder(path if path.is_dir() else path.parent)
    if folder.spec_path.exists() and not folder.is_finished():
        raise CheckpointError(
            f"{option} {given}: {folder.path} is an unfinished run (it has no readable {RunFolder.SUMMARY}): "
            "finish that run first, or start from a finished one"
        )
    return folder.checkpoint_path if path.is_dir() else path


def file_digest(path: Path) -> str | None:
    """'sha256:<hex>' of the file; None for a missing one (its reader then says what is missing)."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def data_folder(spec) -> Path | None:
    """The folder the run's data set is read from: ``data_root``, else for Fashion-MNIST's sets the folder
    the readers look it up in; None for sets read from no folder (generated, digits), for a set torchvision
    may download (its files are checked by torchvision: the set's name is its identity) and where none is
    found (the reader then says so)."""
    dataset = getattr(spec, "dataset", None)
    key = folder_key(dataset) if dataset else None
    if key is None or getattr(spec, "download", False):
        return None
    if spec.data_root:
        return Path(spec.data_root)
    if key == "fashion_mnist":
        return next((folder for folder, _ in fashion_mnist_candidates() if holds_fashion_mnist(folder)), None)
    return None


def data_fingerprint(folder: Path | None) -> str | None:
    """'files:<sha256>' over the sorted (path relative to ``folder``, size) of every file under it (links
    followed, as the readers follow them); None for no folder or a missing one.

    Neither mtimes nor the folder's own path are in it: clusters stage ImageNet to a node-local disk per
    job, which changes both. Contents are not read: a file rewritten in place to the same size is not
    noticed (check-data's checksums are the deeper check). Cost (docs/measurements.md, 2026-12-07, this
    2-core machine): 2.7 s for 200,000 files with the metadata cached, 8.4 s cold, so about 18 s (warm)
    to 1 min (cold) for ImageNet-1K's 1.33 M files; measured by timing
    ``data_fingerprint(Path('/tmp/fp_bench/imagenet'))`` on 1,000 folders of 200 small files.
    """
    if folder is None or not folder.is_dir():
        return None
    entries = sorted(_files(folder, ""))
    digest = hashlib.sha256()
    for relative, size in entries:
        digest.update(f"{relative}\0{size}\n".encode("utf-8", "surrogateescape"))
    return f"files:{digest.hexdigest()}"


def _files(folder: Path, prefix: str):
    """(relative path, size) of every file under ``folder``; a folder seen twice (a link cycle) once."""
    seen: set[tuple[int, int]] = set()
    pending = [(str(folder), prefix)]
    while pending:
        path, relative = pending.pop()
        stat = os.stat(path)
        if (stat.st_dev, stat.st_ino) in seen:
            continue
        seen.add((stat.st_dev, stat.st_ino))
        with os.scandir(path) as found:
            for entry in found:
                name = f"{relative}{entry.name}"
                try:
                    if entry.is_dir():
                        pending.append((entry.path, f"{name}/"))
                    elif entry.is_file():
                        yield name, entry.stat().st_size
                except OSError:  # a broken link: not data the readers can read
                    continue


def input_changes(recorded: dict, current: dict[str, str | None]) -> str:
    """Which inputs changed between ``recorded`` (a checkpoint's or a summary's) and ``current``, one clause
    each ('' if none). A key ``recorded`` lacks is unrecorded (unchanged); a current None is nothing to compare."""
    changes = [
        f"{name} changed: was trained from {recorded[name] or f'an unrecorded {name}'}, this run starts from {value}"
        for name, value in current.items()
        if value is not None and name in recorded and recorded[name] != value
    ]
    return "; ".join(changes)


def recorded_inputs(summary: dict) -> dict:
    """The inputs a summary recorded; an evaluation's summary from before ``inputs`` recorded its upstream
    as ``init_digest``."""
    inputs = summary.get("inputs")
    if isinstance(inputs, dict):
        return inputs
    return {"upstream": summary["init_digest"]} if "init_digest" in summary else {}


def stale_summary(folder: RunFolder, summary: dict, current: dict[str, str | None]) -> bool:
    """Whether a finished run's ``summary`` was made from other inputs than ``current``: if so, says so in one
    line and sets summary.json aside (``summary.json.stale``), so that the run goes again."""
    changed = input_changes(recorded_inputs(summary), current)
    if not changed:
        return False
    folder.set_summary_aside(
        folder.stale_summary_path, f"{folder.summary_path} is stale ({changed})", "the run goes again"
    )
    return True
