"""Reading a run folder (spec.json, metrics.jsonl, summary.json) for figures and comparisons."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def read_spec(run: str | Path) -> dict:
    path = Path(run) / "spec.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: {run} is not a run folder")
    return json.loads(path.read_text())


def read_summary(run: str | Path) -> dict | None:
    """summary.json, or None for a run that has not finished."""
    path = Path(run) / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def read_metrics(run: str | Path, kind: str) -> pd.DataFrame:
    """The ``kind`` ("step" or "epoch") lines of metrics.jsonl, one row each; empty if there are none."""
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: {run} has not logged anything")
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame([line for line in lines if line.get("kind") == kind])


def variant_label(run: str | Path) -> str:
    """What a run is, in a few words: its NoR variant, or for an evaluation run, that of the run it started from."""
    spec = read_spec(run)
    if spec.get("stage", "pretrain") != "pretrain":
        init = Path(str(spec.get("init", "")))
        if (init / "spec.json").exists():
            spec = read_spec(init)
        elif (init.parent / "spec.json").exists():
            spec = read_spec(init.parent)
        else:
            return Path(run).name
    if spec.get("method") == "nor_mae":
        return f"nor_mae {spec['nor_variant']}" + (f" ({spec['cnp']} CNP)" if spec.get("cnp", "paper") != "paper" else "")
    return str(spec.get("method", Path(run).name))
