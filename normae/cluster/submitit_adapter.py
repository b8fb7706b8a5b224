"""Submit one run to submitit (local or SLURM), or re-attach to its job, and wait for it.

The only module that touches submitit's internals (the watcher's ``_make_command``, ``_registered``
and ``_finished``, ``JobEnvironment._requeue``): pyproject pins submitit to the tested minor version.

This is the launcher side: it runs on a login node, hundreds at a time, for days. It imports
neither torch nor timm (the job does), and it waits with submitit's watcher, which asks the cluster
at 2, 4, 8, ... seconds after a submission and then at most every ``POLL_MAX_S``; between those
calls it only looks for the job's result file.

A run folder ``<run>/`` holds ``job.json`` (the launcher, the current job id and every job id ever
submitted for it) and ``slurm/`` (submitit's pickles, the job logs, and ``<job id>_summary.json``,
the copy of summary.json that a job's rank 0 writes). Launching a run whose job is pending or
running waits for that job; a run with ``summary.json`` is never submitted again.

The launcher never unpickles anything from a run folder: whether a job succeeded is whether
summary.json is there, a summary is restored only from the job's JSON copy (and only if it is this
spec's), a failure is reported from the job's log, and job ids from job.json are checked before
they reach a path (``normae.paths.RunFolder.read_job_record``).
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import submitit
from submitit.local.local import LocalJob
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from normae.cluster.resources import num_tasks
from normae.errors import LaunchError, NormaeError
from normae.paths import RunFolder
from normae.spec import SpecBase, load_spec
from normae.stages.inputs import input_changes, recorded_inputs, run_inputs

POLL_MAX_S = 300
# After a job ends, how long to look for its summary.json while its result file is not there yet
# (a slow shared file system), as submitit waits for its result file.
RESULT_GRACE_S = 15
LOG_TAIL_LINES = 25
# squeue states of a job that is not over, as the states submitit's watcher knows as "not done".
ALIVE_STATES = {
    "CONFIGURING": "RUNNING",
    "RESIZING": "RUNNING",
    "SIGNALING": "RUNNING",
    "STAGE_OUT": "RUNNING",
    "SUSPENDED": "RUNNING",
    "STOPPED": "RUNNING",
    "REQUEUE_HOLD": "PENDING",
    "REQUEUE_FED": "PENDING",
    "RESV_DEL_HOLD": "PENDING",
    "SPECIAL_EXIT": "PENDING",
}


# ---- knowing whether a job is still there ---------------------------------------------------------
def sacct_answers() -> bool:
    """Whether ``sacct`` exists and works (it does not where accounting storage is off)."""
    if shutil.which("sacct") is None:
        return False
    probe = subprocess.run(["sacct", "--noheader", "-X", "-j", "1", "-o", "JobID"], capture_output=True, timeout=60)
    return probe.returncode == 0


class QueueWatcher(SlurmInfoWatcher):
    """submitit's SLURM watcher, asking ``squeue`` when ``sacct`` cannot answer.

    Without accounting, submitit's sacct calls fail and a job's state stays UNKNOWN forever: a job
    that died without writing its result would be waited for endlessly. squeue lists a job until
    ``MinJobAge`` after its end; a registered job it no longer lists is over (state ``GONE``).
    """

    def __init__(self, delay_s: int) -> None:
        super().__init__(delay_s)
        self.use_sacct: bool | None = None

    def _make_command(self):
        if self.use_sacct is None:
            self.use_sacct = sacct_answers()
        if self.use_sacct:
            return super()._make_command()
        if not self._registered - self._finished:
            return None
        return ["squeue", "--me", "--noheader", "--states=all", "--format=%i|%T|%N"]

    def read_info(self, string):
        if self.use_sacct:
            return super().read_info(string)
        text = string.decode() if isinstance(string, bytes) else string
        info = {}
        for line in text.splitlines():
            job_id, state, nodes = (line.split("|") + ["", ""])[:3]
            info[job_id.strip()] = {"JobID": job_id.strip(), "State": ALIVE_STATES.get(state, state), "NodeList": nodes}
        for job_id in self._registered - self._finished - set(info):
            info[job_id] = {"JobID": job_id, "State": "GONE"}
        return info


class QueuedSlurmJob(SlurmJob):
    watcher = QueueWatcher(delay_s=POLL_MAX_S)


def process_alive(pid: str) -> bool:
    """Whether ``pid`` is a running submitit local controller (not a recycled pid)."""
    try:
        return b"submitit.local" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


class AttachedLocalJob(LocalJob):
    """A local job started by another launcher process: followed through its controller's pid."""

    def get_info(self, mode: str = "force") -> dict:
        if self._process is not None:
            return super().get_info(mode)
        if self.paths.result_pickle.exists():
            return {"jobState": "FINISHED"}
        return {"jobState": "RUNNING" if process_alive(self.job_id) else "NO PROCESS AND NO RESULT"}


# ---- the run folder's record -----------------------------------------------------------------------
@contextmanager
def locked(folder: RunFolder):
    """One launcher at a time decides whether a run needs a new job (two started together submit once).

    Only while it decides: a launcher waiting on its job holds no lock (the job's rank 0 holds the
    folder's training lock)."""
    with folder.launch_lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def job_from_record(record: dict, folder: Path):
    tasks = list(range(record["tasks"]))
    job_class = QueuedSlurmJob if record["launcher"] == "slurm" else AttachedLocalJob
    return job_class(folder=folder, job_id=str(record["job_id"]), tasks=tasks)


def still_running(job) -> bool:
    return not job.done(force_check=True)


def is_summary_of(summary: dict, spec: SpecBase) -> bool:
    """Whether ``summary`` is a summary of ``spec``'s run (its run id, and a spec with the same digest)."""
    recorded = summary.get("spec")
    if summary.get("run_id") != spec.run_id() or summary.get("stage") != spec.stage or not isinstance(recorded, dict):
        return False
    try:
        return type(spec).from_dict(recorded).digest() == spec.digest()
    except (NormaeError, TypeError, ValueError, AttributeError):
        return False


def restore_summary(job, folder: RunFolder, spec: SpecBase) -> bool:
    """Put back summary.json from the copy the ended job's rank 0 wrote (``slurm/<job id>_summary.json``), if
    it is a summary of ``spec`` made from the run's current inputs (``normae.stages.inputs``: a copy from
    before its upstream, teacher or data changed is stale); whether it did. The job's result pickle is
    never read."""
    summary = folder.read_job_summary(job.job_id)
    if summary is None:
        return False
    if not is_summary_of(summary, spec):
        print(
            f"[normae] {folder.job_summary_path(job.job_id)} is not a summary of {spec.run_id()}; not restored",
            file=sys.stderr,
        )
        return False
    changed = input_changes(recorded_inputs(summary), run_inputs(spec))
    if changed:
        print(f"[normae] {folder.job_summary_path(job.job_id)} is stale ({changed}); not restored", file=sys.stderr)
        return False
    folder.write_summary(summary)
    return True


# ---- submitting ------------------------------------------------------------------------------------
def executor_for(launcher: str, folder: Path, resources: dict, job_name: str):
    if launcher == "local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=resources["max_requeues"])
        executor.update_parameters(
            timeout_min=resources["timeout_min"],
            tasks_per_node=resources["tasks_per_node"],
            gpus_per_node=resources["gpus_per_node"],
            signal_delay_s=resources["signal_delay_s"],
        )
        return executor
    if shutil.which("sbatch") is None:
        raise LaunchError("launcher 'slurm' needs sbatch on PATH: run on a SLURM login node, or use --launcher local")
    slurm = submitit.SlurmExecutor(folder=folder, max_num_timeout=resources["max_requeues"])
    slurm.job_class = QueuedSlurmJob
    parameters: dict[str, Any] = {
        "job_name": job_name,
        "nodes": resources["nodes"],
        "ntasks_per_node": resources["tasks_per_node"],
        "time": resources["timeout_min"],
        "signal_delay_s": resources["signal_delay_s"],
        "additional_parameters": {"requeue": True, **resources["additional_parameters"]},
    }
    if resources["gpus_per_node"]:
        parameters["gpus_per_node"] = resources["gpus_per_node"]
    if resources["mem_gb"] is not None:
        parameters["mem"] = f"{resources['mem_gb']}GB"
    for key in ("partition", "account", "qos", "cpus_per_task", "constraint"):
        if resources[key] is not None:
            parameters[key] = resources[key]
    slurm.update_parameters(**parameters)
    return slurm


def first_task(job):
    return job.task(0) if job.num_tasks > 1 else job


def log_paths(job) -> str:
    first = first_task(job)
    return f"{first.paths.stderr} and {first.paths.stdout}"


def log_tail(job, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of rank 0's error log (where the job's error is), or a note that there is none."""
    path = first_task(job).paths.stderr
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def submit_or_attach(job_function, spec_path: Path, folder: RunFolder, launcher: str, resources: dict):
    """The job to wait for: the recorded one while it is pending or running, else a new submission of
    ``job_function`` (a ``normae.cluster.job.StageJob``); None if the run is finished."""
    submitit_dir = folder.submitit_dir
    submitit_dir.mkdir(parents=True, exist_ok=True)
    with locked(folder):
        if folder.finished_summary(set_aside=True) is not None:
            return None
        record = folder.read_job_record() or {"submissions": []}
        if "job_id" in record:
            job = job_from_record(record, submitit_dir)
            if still_running(job):
                print(f"[normae] {folder.path}: re-attached to {record['launcher']} job {job.job_id}", file=sys.stderr)
                return job
            if restore_summary(job, folder, load_spec(spec_path)):
                print(
                    f"[normae] {folder.path}: job {job.job_id} had finished; summary.json restored from "
                    f"{folder.job_summary_path(job.job_id)}",
                    file=sys.stderr,
                )
                return None
            print(
                f"[normae] {folder.path}: job {job.job_id} ended without summary.json (logs: {log_paths(job)}); "
                "submitting a new one, which resumes from the checkpoint",
                file=sys.stderr,
            )
        executor = executor_for(launcher, submitit_dir, resources, job_name=f"normae-{folder.name}")
        job = executor.submit(job_function)
        folder.write_job_record(
            {
                "launcher": launcher,
                "job_id": job.job_id,
                "tasks": num_tasks(resources),
                "spec": str(spec_path),
                "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "resources": resources,
                "submissions": record["submissions"] + [job.job_id],
            }
        )
        print(
            f"[normae] {folder.path}: submitted {launcher} job {job.job_id} (logs: {log_paths(job)})", file=sys.stderr
        )
        return job


def wait_for(job, folder: RunFolder) -> None:
    """Wait until the job ends; raise ``LaunchError`` (with its log's end and paths) unless it wrote summary.json.

    Success is summary.json, not the job's result pickle, which is never read."""
    job.wait()
    result_file = first_task(job).paths.result_pickle
    deadline = time.monotonic() + RESULT_GRACE_S
    while not folder.is_finished() and not result_file.exists() and time.monotonic() < deadline:
        time.sleep(1)
    if not folder.is_finished():
        raise LaunchError(
            f"job {job.job_id} for {folder.path} failed: it ended without {folder.summary_path}. "
            f"The end of its log:\n{log_tail(job)}\nLogs: {log_paths(job)}"
        )


def requeue(job_environment, remaining: int) -> None:
    """Requeue the running SLURM job (submitit's private ``JobEnvironment._requeue``; submitit is pinned for it)."""
    job_environment._requeue(remaining)
