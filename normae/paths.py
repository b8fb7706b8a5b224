"""Where every file lives: a run folder's files and the results layout, with their reads and atomic writes.

Torch-free: the planner, the launcher, the tables and the workflow's ``.smk`` files all name files
through this module, so a file name is spelled here and nowhere else.

A run folder holds ``spec.json`` (written first), ``checkpoint.pt`` and ``metrics.jsonl`` (during
the run) and ``summary.json`` (written last and atomically): a folder without a summary is not
finished, and a folder that holds one spec never runs another.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from normae.errors import MissingResultError, RunFolderError

RUNS_DIR = "results/runs"
ANALYSIS_DIR = "results/analysis"
TABLES_DIR = "results/tables"
LOGS_DIR = "results/logs"
FIGURES_DIR = "figures"
ALL_RUNS_CSV = "results/all_runs.csv"


# ---- files that are either whole or absent ---------------------------------------------------------
def atomic_replace(path: str | Path, write) -> None:
    """Write through ``write(file_object)`` into a temporary file beside ``path``, then rename.

    A killed process leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_replace(Path(path), lambda handle: handle.write(text.encode()))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: str | Path, missing: str | None = None) -> Any:
    """A JSON file's content; a missing file raises ``MissingResultError`` (with ``missing`` as the hint),
    an unreadable one names the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MissingResultError(f"{path} does not exist" + (f": {missing}" if missing else "")) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise MissingResultError(f"{path} is not valid JSON ({error}): delete it and rerun what writes it") from None


# ---- one run --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunFolder:
    """The files of one run, and their reads and writes."""

    path: Path

    SPEC = "spec.json"
    SUMMARY = "summary.json"
    METRICS = "metrics.jsonl"
    CHECKPOINT = "checkpoint.pt"
    JOB_RECORD = "job.json"
    SUBMITIT_DIR = "slurm"
    LAUNCH_LOG = "launch.log"

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def spec_path(self) -> Path:
        return self.path / self.SPEC

    @property
    def summary_path(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def job_record_path(self) -> Path:
        return self.path / self.JOB_RECORD

    @property
    def submitit_dir(self) -> Path:
        return self.path / self.SUBMITIT_DIR

    # -- spec
    def read_spec(self) -> dict:
        """spec.json as a dict; a folder without one is not a run folder."""
        return read_json(self.spec_path, f"{self.path} is not a run folder")

    def check_spec(self, spec) -> None:
        """Refuse a folder that holds a different spec than ``spec`` (a ``normae.spec`` object)."""
        if not self.spec_path.exists():
            return
        try:
            existing = type(spec).parse(self.read_spec())
        except (ValueError, TypeError, MissingResultError) as error:
            raise RunFolderError(f"{self.spec_path} is unreadable ({error}); choose another output folder") from None
        if existing.stage != spec.stage or existing.digest() != spec.digest():
            raise RunFolderError(
                f"{self.path} holds another run ({existing.stage} spec {existing.digest()[:8]}, this is "
                f"{spec.stage} spec {spec.digest()[:8]}): choose another output folder"
            )

    def write_spec(self, spec) -> None:
        """Write spec.json, refusing a folder that already holds a different spec."""
        self.check_spec(spec)
        atomic_write_text(self.spec_path, spec.to_json())

    # -- summary
    def is_finished(self) -> bool:
        return self.summary_path.exists()

    def read_summary(self) -> dict | None:
        """summary.json, or None for a run that has not finished; a corrupt one names its file."""
        if not self.summary_path.exists():
            return None
        summary = read_json(self.summary_path)
        if not isinstance(summary, dict):
            raise MissingResultError(
                f"{self.summary_path} holds no summary (a JSON object): delete it and rerun the run"
            )
        return summary

    def require_summary(self) -> dict:
        summary = self.read_summary()
        if summary is None:
            raise MissingResultError(f"{self.summary_path} does not exist: {self.path} is not a finished run")
        return summary

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.summary_path, summary)

    # -- metrics
    def read_metrics(self, kind: str | None = None) -> list[dict]:
        """The lines of metrics.jsonl (only those of ``kind``, "step" or "epoch", if given)."""
        if not self.metrics_path.exists():
            raise MissingResultError(f"{self.metrics_path} does not exist: {self.path} has not logged anything")
        records = []
        for number, line in enumerate(self.metrics_path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise MissingResultError(f"{self.metrics_path}, line {number}: not valid JSON ({error})") from None
        return [record for record in records if kind is None or record.get("kind") == kind]

    # -- the launcher's record of its jobs
    def read_job_record(self) -> dict | None:
        return read_json(self.job_record_path) if self.job_record_path.exists() else None

    def write_job_record(self, record: dict) -> None:
        atomic_write_json(self.job_record_path, record)


# ---- the results tree -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResultsLayout:
    """Every output's path under ``root``. The workflow passes wildcards (``"{run}"``) as names to get patterns."""

    root: Path = Path(".")

    def run(self, run_id: str) -> RunFolder:
        return RunFolder(self.root / RUNS_DIR / run_id)

    def run_file(self, run_id: str, name: str) -> str:
        return str(self.root / RUNS_DIR / run_id / name)

    def cnp_similarity(self, source: str) -> Path:
        return self.root / ANALYSIS_DIR / "cnp_similarity" / f"{source}.json"

    def cost(self) -> Path:
        return self.root / ANALYSIS_DIR / "cost.json"

    def pca(self, run_id: str, suffix: str = "json") -> Path:
        return self.root / ANALYSIS_DIR / "pca" / f"{run_id}.{suffix}"

    def table(self, name: str, suffix: str) -> Path:
        return self.root / TABLES_DIR / f"{name}.{suffix}"

    def tables_dir(self) -> Path:
        return self.root / TABLES_DIR

    def all_runs(self) -> Path:
        return self.root / ALL_RUNS_CSV

    def figure(self, name: str) -> Path:
        return self.root / FIGURES_DIR / f"{name}.png"

    def log(self, name: str) -> Path:
        """``results/logs/<name>.log``; ``name`` may hold a sub-folder (``tables/table5``)."""
        return self.root / LOGS_DIR / f"{name}.log"
