"""``normae progress``: where a workflow is, in a few lines: planned runs done, each running run's own
progress line (epoch, step, its ETA, loss) and a rough ETA for the rest. It reads the run folders only
(launch.log, or the SLURM job's log in the run's ``slurm/``; summary.json; benchmark.tsv), so it works
beside any Snakemake console, on a login node, in another terminal: ``normae progress --watch 30``.
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from normae.cli.plan import add_plan_options, plan_from_args
from normae.paths import RUNS_DIR, RunFolder, readable_label
from normae.training.progress import eta_text, last_progress

# A run whose log has not changed for this long is listed as stalled, not running.
STALLED_AFTER_S = 15 * 60


@dataclass
class RunProgress:
    run_id: str
    line: str  # "epoch 1/3 step 10/64 eta 0:00:19 loss=0.912"
    eta_s: float  # the run's own ETA
    age_s: float  # since its log last changed


def run_logs(folder: RunFolder) -> list[Path]:
    """Where a run's progress lines go: launch.log (in the Snakemake job) and its SLURM job's logs."""
    logs = [folder.path / RunFolder.LAUNCH_LOG, *folder.submitit_dir.glob("*_log.*")]
    return [log for log in logs if log.is_file()]


def run_progress(folder: RunFolder, now: float) -> RunProgress | None:
    """The run's last progress line, from its most recently written log; None before its first."""
    for log in sorted(run_logs(folder), key=lambda path: path.stat().st_mtime, reverse=True):
        found = last_progress(log.read_text(errors="replace"))
        if found is not None:
            hours, minutes, seconds = found["eta"].rsplit(" ", 1)[-1].split(":")
            days = int(found["eta"].split(" ")[0]) if "day" in found["eta"] else 0
            eta = ((days * 24 + int(hours)) * 60 + int(minutes)) * 60 + int(seconds)
            loss = f" loss={found['loss']}" if found["loss"] else ""
            line = f"{found['where']} eta {found['eta']}{loss}"
            return RunProgress(folder.name, line, eta, now - log.stat().st_mtime)
    return None


def run_seconds(folder: RunFolder) -> float | None:
    """The wall time of a finished run's last attempt (Snakemake's benchmark.tsv), or None."""
    path = folder.path / RunFolder.BENCHMARK
    if not path.is_file():
        return None
    with path.open() as rows:
        seconds = [float(row["s"]) for row in csv.DictReader(rows, delimiter="\t") if row.get("s")]
    return seconds[-1] if seconds else None


def progress_report(root: Path, run_ids: list[str], now: float | None = None) -> str:
    """The lines `normae progress` prints for the planned ``run_ids`` under ``root``."""
    now = time.time() if now is None else now
    folders = [RunFolder(root / RUNS_DIR / run_id) for run_id in run_ids]
    done = [folder for folder in folders if folder.summary_path.exists()]
    found = [run_progress(folder, now) for folder in folders if not folder.summary_path.exists()]
    running = [run for run in found if run is not None and run.age_s < STALLED_AFTER_S]
    stalled = [run for run in found if run is not None and run.age_s >= STALLED_AFTER_S]
    waiting = len(folders) - len(done) - len(running)
    lines = [
        f"runs: {len(done)} of {len(folders)} done ({100 * len(done) / max(len(folders), 1):.0f}%), "
        f"{len(running)} running, {waiting} not started or stopped{eta_estimate(done, running, waiting)}"
    ]
    for run in sorted(running, key=lambda run: run.eta_s):
        lines.append(f"  {readable_label(run.run_id)}: {run.line}")
    for run in stalled:
        lines.append(f"  stalled ({eta_text(run.age_s)} without a line): {readable_label(run.run_id)}: {run.line}")
    return "\n".join(lines)


def eta_estimate(done: list[RunFolder], running: list[RunProgress], waiting: int) -> str:
    """A rough ETA for the rest: the runs waiting take the mean finished run's time, as many at a time as
    run now, after the running runs' own ETAs. Empty before the first run has finished."""
    seconds = [s for s in map(run_seconds, done) if s is not None]
    if not seconds or not (running or waiting):
        return ""
    mean = statistics.fmean(seconds)
    left = max((run.eta_s for run in running), default=0.0) + mean * waiting / max(len(running), 1)
    return f"; about {eta_text(left)} left (a finished run took {eta_text(mean)} on average)"


def add_progress(command) -> None:
    progress = command(
        "progress",
        "print how far the workflow is: runs done, each running run's epoch, step and ETA, and the time left",
        "Reads the planned runs' folders (the plan options choose the scale, as for `normae plan`). The time "
        "left is rough: runs not started take the mean finished run's time, as many at a time as run now.",
    )
    add_plan_options(progress)
    progress.add_argument("--root", default=".", help=f"folder holding {RUNS_DIR}")
    progress.add_argument("--watch", type=float, default=None, metavar="SECONDS", help="print again every SECONDS")
    progress.set_defaults(func=cmd_progress)


def cmd_progress(args) -> int:
    plan = plan_from_args(args)
    run_ids = [*plan.pretrain, *plan.evaluations, *plan.measurements]
    while True:
        report = progress_report(Path(args.root), run_ids)
        clear = "\033[H\033[J" if args.watch and sys.stdout.isatty() else ""
        print(f"{clear}{time.strftime('%Y-%m-%d %H:%M:%S')} {report}", flush=True)
        if not args.watch:
            return 0
        time.sleep(args.watch)
