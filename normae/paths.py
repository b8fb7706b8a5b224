"""Where every file lives: a run folder's files and the results layout, with their reads and atomic writes.

Torch-free: the planner, the launcher, the tables and the workflow's ``.smk`` files all name files
through this module, so a file name is spelled here and nowhere else.

A run folder holds ``spec.json`` (written first), ``checkpoint.pt`` and ``metrics.jsonl`` (during
the run) and ``summary.json`` (written last and atomically): a folder without a readable summary is
not finished, and a folder that holds one spec never runs another. While a process trains in it, the
folder's lock file is locked (``RunFolder.training_lock``): a second process is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from normae.atomic import atomic_write_json, atomic_write_text, read_json, temporary_files
from normae.errors import MissingResultError, RunFolderError

RUNS_DIR = "results/runs"
ANALYSIS_DIR = "results/analysis"
TABLES_DIR = "results/tables"
LOGS_DIR = "results/logs"
FIGURES_DIR = "figures"
ALL_RUNS_CSV = "results/all_runs.csv"
# A link per run to its event files, named by its readable label: `tensorboard --logdir results/tensorboard`.
TENSORBOARD_DIR = "results/tensorboard"
# MLflow's file store, where a run logs with NORMAE_LOGGERS=mlflow and no MLFLOW_TRACKING_URI is set.
MLFLOW_DIR = "results/mlflow"
# The 8 hex digits a run id ends with (and an evaluation's id holds for its pre-training run).
RUN_DIGEST = re.compile(r"-[0-9a-f]{8}(?=-|$)")
# A job id as it may appear in a file name: SLURM's ``123`` or ``123_4`` (array task), or the pid
# that submitit's local launcher uses. Anything else read from job.json never reaches a path.
JOB_ID = re.compile(r"[0-9]+(_[0-9]+)?")


def readable_label(run_id: str) -> str:
    """A run's name for people (TensorBoard, W&B, MLflow): its id without digests, under its stage.

    ``fashion_mnist-finetune-from-fmnist-vit_mini-p4-mae-mr0.75-ep1-s0-591bdd14-ep1-s0-39418443`` is
    ``finetune/fashion_mnist from fmnist-vit_mini-p4-mae-mr0.75-ep1-s0, ep1-s0``; a pre-training or bench
    run is ``pretrain/<id>`` or ``bench/<id>``. Unique within each scale's plan (tests/test_loggers.py).
    """
    target, _, upstream = run_id.partition("-from-")
    digest = RUN_DIGEST.search(upstream)
    if digest is not None and "-" in target:  # an evaluation: what it evaluates, then its own settings
        data, stage = target.rsplit("-", 1)
        own = RUN_DIGEST.sub("", upstream[digest.end() :]).lstrip("-")
        return f"{stage}/{data} from {upstream[: digest.start()]}" + (f", {own}" if own else "")
    stage = "bench" if run_id.startswith("bench-") else "pretrain"
    return f"{stage}/{RUN_DIGEST.sub('', run_id)}"


def results_root_of(run: Path) -> Path | None:
    """The folder that holds ``results/`` for a run folder in the results layout, or None for one elsewhere."""
    runs = Path(RUNS_DIR)
    if run.parent.name != runs.name or run.parent.parent.name != runs.parent.name:
        return None
    return run.parent.parent.parent


def _same_file(handle, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), path.stat())
    except FileNotFoundError:
        return False


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first), up to the first that is not empty (another run's, made meanwhile)."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:  # removed already (a failed start's stage removes a folder it made)
            continue
        except OSError:
            return


# ---- one run --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunFolder:
    """The files of one run, and their reads and writes."""

    path: Path

    SPEC = "spec.json"
    SUMMARY = "summary.json"
    METRICS = "metrics.jsonl"
    CHECKPOINT = "checkpoint.pt"
    EVENTS_DIR = "events"  # TensorBoard event files (rank 0; only with the tensorboard package)
    JOB_RECORD = "job.json"
    SUBMITIT_DIR = "slurm"
    LAUNCH_LOG = "launch.log"
    # Snakemake's `benchmark:` of the run's job (wall time, memory and CPU of `normae launch`: the training
    # itself when in-process, the submitting and waiting launcher under SLURM, whose job's own time is in
    # summary.json); one line per attempt.
    BENCHMARK = "benchmark.tsv"
    TRAINING_LOCK = ".training.lock"  # locked by the one process that trains here (rank 0)
    LAUNCH_LOCK = ".launch.lock"  # in SUBMITIT_DIR: one launcher at a time decides on a submission
    CORRUPT_SUMMARY = "summary.json.corrupt"  # an unreadable summary.json, set aside so the run resumes
    STALE_SUMMARY = "summary.json.stale"  # a summary made from other inputs (normae.stages.inputs), set aside
    JOB_SUMMARY = "{job_id}_summary.json"  # in SUBMITIT_DIR: the copy of summary.json a job's rank 0 writes

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
    def events_dir(self) -> Path:
        return self.path / self.EVENTS_DIR

    @property
    def job_record_path(self) -> Path:
        return self.path / self.JOB_RECORD

    @property
    def submitit_dir(self) -> Path:
        return self.path / self.SUBMITIT_DIR

    @property
    def training_lock_path(self) -> Path:
        return self.path / self.TRAINING_LOCK

    @property
    def launch_lock_path(self) -> Path:
        return self.submitit_dir / self.LAUNCH_LOCK

    @property
    def corrupt_summary_path(self) -> Path:
        return self.path / self.CORRUPT_SUMMARY

    @property
    def stale_summary_path(self) -> Path:
        return self.path / self.STALE_SUMMARY

    def job_summary_path(self, job_id: str) -> Path:
        """Where the job ``job_id`` (checked against ``JOB_ID``) keeps its copy of summary.json."""
        return self.submitit_dir / self.JOB_SUMMARY.format(job_id=checked_job_id(job_id, self.submitit_dir))

    # -- one process trains here at a time
    @contextmanager
    def training_lock(self) -> Iterator[None]:
        """Hold the folder's lock while training in it; a folder another process holds is a ``RunFolderError``.

        An ``fcntl.flock`` on ``.training.lock``: the kernel drops it when the process ends, however it
        ends (kill -9 included), so a stale lock never blocks a resume. It is not re-entrant: a second
        ``training_lock`` of the same folder, even in the same process, is refused. A start that fails
        before the run is written (no spec.json: ``spec_withdrawn_on_early_failure``) leaves nothing
        behind: the lock file goes, and so do the folders the lock created if they are empty.
        """
        self.check_place()
        created = [folder for folder in (self.path, *self.path.parents) if not folder.exists()]
        handle = self._open_locked()
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            if not self.spec_path.exists():  # no run started here (a failed start withdraws its spec)
                # still locked: a process that opened it is refused; the stage may have removed the folder
                self.training_lock_path.unlink(missing_ok=True)
                _remove_empty(created)
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def _open_locked(self):
        """The lock file, opened and locked; the one at the path (a releasing holder may unlink its own)."""
        while True:
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                handle = self.training_lock_path.open("a+")
            except FileNotFoundError:  # a releasing holder removed the folder it had created: make it again
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise RunFolderError(
                    f"{self.path} is in use: {holder} is training in it (it holds {self.training_lock_path}); "
                    "wait for it to end, or choose another output folder"
                ) from None
            if _same_file(handle, self.training_lock_path):
                return handle
            handle.close()  # locked a file its releasing holder had unlinked: lock the one there now

    # -- spec
    def read_spec(self) -> dict:
        """spec.json as a dict; a folder without one is not a run folder."""
        spec = read_json(self.spec_path, f"{self.path} is not a run folder")
        if not isinstance(spec, dict):
            raise MissingResultError(f"{self.spec_path} holds no spec (a JSON object): {self.path} is not a run folder")
        return spec

    def check_place(self) -> None:
        """Refuse a path that cannot be a folder (it, or a folder above it, is a file)."""
        for place in (self.path, *self.path.parents):
            if place.exists():
                if not place.is_dir():
                    raise RunFolderError(
                        f"{place} is a file, so {self.path} cannot be a run folder: choose another output folder"
                    )
                break

    def check_spec(self, spec) -> None:
        """Refuse a folder that holds a different spec than ``spec`` (a ``normae.spec`` object), and a
        path that cannot be a folder. Read, parsed and hashed: a stage does it once, under the folder's
        lock (``normae.stages.common.decide``), the launcher once before it submits."""
        self.check_place()
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
        """Write spec.json; the caller has checked the folder's spec (``check_spec``), under its lock."""
        atomic_write_text(self.spec_path, spec.to_json())

    # -- summary
    def is_finished(self) -> bool:
        """Whether summary.json holds a summary (a corrupt one is no sign of a finished run)."""
        return self.finished_summary() is not None

    def finished_summary(self, set_aside: bool = False) -> dict | None:
        """summary.json's summary; None while the run is unfinished, and also for a summary.json that is
        no summary (corrupt, not JSON, not an object): ``set_aside`` then moves it to
        ``summary.json.corrupt``, with a line on stderr, so that the run resumes and writes a new one."""
        try:
            return self.read_summary()
        except MissingResultError as error:
            if set_aside:
                self.set_summary_aside(self.corrupt_summary_path, str(error), "the run goes on")
            return None

    def set_summary_aside(self, to: Path, why: str, then: str) -> None:
        """Move summary.json to ``to`` (a corrupt or a stale one), saying ``why`` and ``then`` in one line;
        nothing where another process set it aside first."""
        try:
            os.replace(self.summary_path, to)
        except FileNotFoundError:
            return
        print(f"[normae] {why}; moved it to {to}, {then}", file=sys.stderr, flush=True)

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

    # -- what killed writes leave
    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the temporary files that killed atomic writes of checkpoint.pt, metrics.jsonl and
        summary.json left here (``.<name>.<random>.tmp``, nothing else); returns them.

        Call it only while holding the folder for training (no other process writes these files then).
        """
        written = (self.CHECKPOINT, self.METRICS, self.SUMMARY)
        stale = [tmp for name in written for tmp in temporary_files(self.path / name)]
        for tmp in stale:
            tmp.unlink(missing_ok=True)
        return stale

    # -- metrics
    def read_metrics(self, kind: str | None = None) -> list[dict]:
        """The lines of metrics.jsonl (only those of ``kind``, "step" or "epoch", if given)."""
        if not self.metrics_path.exists():
            raise MissingResultError(f"{self.metrics_path} does not exist: {self.path} has not logged anything")
        records = []
        try:
            text = self.metrics_path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise MissingResultError(f"cannot read {self.metrics_path}: {error}") from None
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise MissingResultError(f"{self.metrics_path}, line {number}: not valid JSON ({error})") from None
            if not isinstance(record, dict):
                raise MissingResultError(f"{self.metrics_path}, line {number}: not a metrics record (a JSON object)")
            records.append(record)
        return [record for record in records if kind is None or record.get("kind") == kind]

    # -- a job's copy of its summary (the launcher restores summary.json from it, never from a pickle)
    def write_job_summary(self, job_id: str, summary: dict) -> None:
        atomic_write_json(self.job_summary_path(job_id), summary)

    def read_job_summary(self, job_id: str) -> dict | None:
        """The summary the job ``job_id`` left in ``slurm/<job id>_summary.json``; None if none (or unreadable)."""
        path = self.job_summary_path(job_id)
        if not path.exists():
            return None
        try:
            summary = read_json(path)
        except MissingResultError:
            return None
        return summary if isinstance(summary, dict) else None

    # -- the launcher's record of its jobs
    def read_job_record(self) -> dict | None:
        """job.json, checked: its job id is a job id (it goes into paths) and its task count a count."""
        if not self.job_record_path.exists():
            return None
        record = read_json(self.job_record_path)
        if not isinstance(record, dict) or not isinstance(record.get("submissions", []), list):
            raise RunFolderError(f"{self.job_record_path} is no job record: delete it and launch again")
        if "job_id" in record:
            record["job_id"] = checked_job_id(record["job_id"], self.job_record_path)
            tasks = record.get("tasks")
            if record.get("launcher") not in ("local", "slurm") or not (
                isinstance(tasks, int) and not isinstance(tasks, bool) and 0 < tasks <= 100_000
            ):
                raise RunFolderError(
                    f"{self.job_record_path}: launcher {record.get('launcher')!r} and tasks {tasks!r} are no job's; "
                    "delete it and launch again"
                )
        return record

    def write_job_record(self, record: dict) -> None:
        atomic_write_json(self.job_record_path, record)


def checked_job_id(job_id: object, where: str | Path) -> str:
    """``job_id`` if it is a job id (``JOB_ID``: digits, optionally ``_digits``), else a ``RunFolderError``."""
    if not isinstance(job_id, (str, int)) or isinstance(job_id, bool) or not JOB_ID.fullmatch(str(job_id)):
        raise RunFolderError(f"{where}: job id {job_id!r} is not a job id (digits, or digits_digits)")
    return str(job_id)


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

    def pca(self, run_id: str, suffix: str = "json") -> Path:
        return self.root / ANALYSIS_DIR / "pca" / f"{run_id}.{suffix}"

    def table(self, name: str, suffix: str) -> Path:
        return self.root / TABLES_DIR / f"{name}.{suffix}"

    def tables_dir(self) -> Path:
        return self.root / TABLES_DIR

    def verdicts(self) -> Path:
        """The report's first page: the verdicts per table (``normae verdicts``)."""
        return self.root / TABLES_DIR / "verdicts.html"

    def all_runs(self) -> Path:
        return self.root / ALL_RUNS_CSV

    def figure(self, name: str) -> Path:
        return self.root / FIGURES_DIR / f"{name}.png"

    def log(self, name: str) -> Path:
        """``results/logs/<name>.log``; ``name`` may hold a sub-folder (``tables/table5``)."""
        return self.root / LOGS_DIR / f"{name}.log"
