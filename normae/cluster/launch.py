"""Run one spec in its run folder, through a launcher (``normae launch``, what the workflow calls).

``inprocess`` runs it here; ``local`` and ``slurm`` submit it through submitit
(``normae.cluster.submitit_adapter``) and wait for the job. Neither torch nor submitit is imported
until needed, so a process that merely submits and waits stays light.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, get_args

from normae.cluster.resources import num_tasks, resources_from
from normae.errors import ConfigError
from normae.paths import RunFolder
from normae.spec import load_spec
from normae.spec.batching import split_problem
from normae.stages import run_here, summary_line
from normae.stages.inputs import run_inputs, stale_summary

Launcher = Literal["inprocess", "local", "slurm"]
LAUNCHERS: tuple[str, ...] = get_args(Launcher)


def run_as_job(spec_path: Path, folder: RunFolder, launcher: str, resources: dict | None, threads: int | None) -> int:
    """Submit (or re-attach to) the run's job and wait for it; 1 with the job's log paths if it fails."""
    from normae.cluster.job import StageJob
    from normae.cluster.submitit_adapter import submit_or_attach, wait_for
    from normae.errors import LaunchError

    folder = RunFolder(folder.path.resolve())
    resources = resources_from(resources)
    stage_job = StageJob(str(spec_path.resolve()), str(folder.path), resources["max_requeues"], threads)
    job = submit_or_attach(stage_job, spec_path.resolve(), folder, launcher, resources)
    if job is not None:
        try:
            wait_for(job, folder)
        except LaunchError as error:
            print(f"[normae] error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"[normae] stopped waiting; job {job.job_id} goes on: launch again to re-attach", file=sys.stderr)
            return 130
    print(summary_line(folder.require_summary(), folder.path))
    return 0


def launch(
    spec_path: str | Path,
    out: str | Path,
    launcher: Launcher = "inprocess",
    resources: dict | None = None,
    threads: int | None = None,
) -> int:
    """Run the spec in ``spec_path`` (its ``stage`` field says which stage) into ``out``, resuming from its checkpoint.

    The spec is checked first: a bad spec, or a folder holding another run's spec, fails here, not
    in a job hours later. A run whose ``summary.json`` holds a summary made from the run's current inputs
    is left as it is; a corrupt one is moved to ``summary.json.corrupt`` and the run resumes, a stale
    one (made from other inputs: ``normae.stages.inputs``) to ``summary.json.stale`` and the run goes
    again (its job starts afresh from its changed inputs). ``resources``
    (``local`` / ``slurm``): the job's SLURM resources (``normae.cluster.resources``). Returns the exit status.
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher {launcher!r}; use one of {', '.join(LAUNCHERS)}")
    spec = load_spec(spec_path)
    folder = RunFolder(out)
    if launcher == "inprocess":  # the stage checks the folder's spec, under its lock
        return run_here(spec, folder.path, resume=True)
    folder.check_spec(spec)
    problem = split_problem(spec, num_tasks(resources_from(resources))) if hasattr(spec, "global_batch") else None
    if problem:  # before the job waits in the queue, not on the node
        raise ConfigError(f"{spec_path}: {problem} (--slurm nodes, gpus_per_node, tasks_per_node)")
    summary = folder.finished_summary(set_aside=True)  # a corrupt summary.json is set aside: the run resumes
    if summary is not None and not stale_summary(folder, summary, run_inputs(spec)):
        print(f"[normae] {folder.path} is already finished; nothing to submit", file=sys.stderr)
        print(summary_line(summary, folder.path))
        return 0
    return run_as_job(Path(spec_path), folder, launcher, resources, threads)
