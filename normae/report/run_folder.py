"""Run folders as the figures and comparisons read them: metrics as data frames, a run's label."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from normae.errors import MissingResultError
from normae.paths import RunFolder
from normae.spec import SPEC_CLASSES, spec_from_dict


def read_spec(run: str | Path) -> dict:
    return RunFolder(run).read_spec()


def read_summary(run: str | Path) -> dict | None:
    return RunFolder(run).read_summary()


def check_summary_spec(summary: dict, run_id: str, path: Path) -> None:
    """Refuse a summary (``path``, under run ``run_id``) whose spec is not that run's: its spec's run id
    (which ends in the spec's digest) must be ``run_id``, else its numbers are another run's under this name.
    A summary without its ``stage`` (normae writes one) is read as whichever stage's spec makes ``run_id``."""
    made = []
    for stage in [summary["stage"]] if "stage" in summary else list(SPEC_CLASSES):
        try:
            made.append(spec_from_dict({**summary["spec"], "stage": stage}).run_id())
        except (ValueError, TypeError) as error:  # ConfigError is a ValueError
            problem = error
    if run_id in made:
        return
    if not made:
        raise MissingResultError(f"{path}: its spec is unreadable ({problem}): delete it and rerun the run")
    raise MissingResultError(
        f"{path}: its spec is run {made[0]}'s, not run {run_id}'s (another spec's numbers): delete it and rerun the run"
    )


def read_metrics(run: str | Path, kind: str) -> pd.DataFrame:
    """The ``kind`` ("step" or "epoch") lines of metrics.jsonl, one row each; empty if there are none, or if
    the run finished without logging (a k-NN evaluation is one pass: its summary holds everything)."""
    folder = RunFolder(run)
    if not folder.metrics_path.exists() and folder.summary_path.exists():
        return pd.DataFrame()
    return pd.DataFrame(folder.read_metrics(kind))


def pretrain_spec_of(run: str | Path) -> dict | None:
    """The pre-training spec of a run: its own, or for an evaluation run that of the run it started from."""
    spec = read_spec(run)
    if spec.get("stage", "pretrain") == "pretrain":
        return spec
    init = Path(str(spec.get("init", "")))
    for folder in (RunFolder(init), RunFolder(init.parent)):
        if folder.spec_path.exists():
            return folder.read_spec()
    return None


def variant_label(run: str | Path) -> str:
    """What a run is, in a few words: its NoR variant, or for an evaluation run, that of the run it started from."""
    spec = pretrain_spec_of(run)
    if spec is None:
        return Path(run).name
    if spec.get("method") == "nor_mae":
        return f"nor_mae {spec['nor_variant']}" + (
            f" ({spec['cnp']} CNP)" if spec.get("cnp", "paper") != "paper" else ""
        )
    return str(spec.get("method", Path(run).name))
