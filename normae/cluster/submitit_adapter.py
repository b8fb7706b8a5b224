"""Submit one run to submitit (local or SLURM), or re-attach to its job, and wait for it.

The only module that touches submitit's internals (the watcher's ``_make_command``, ``_registered``
and ``_finished``, ``JobEnvironment._requeue``): pyproject pins submitit to the tested minor version.

This is the launcher side: it runs on a login node, hundreds at a time, for days. It imports
neither torch nor timm (the job does), and it waits with submitit's watcher, which asks the cluster
at 2, 4, 8, ... seconds after a submission and then at most every ``POLL_MAX_S``; between those
calls it only looks for the job's result file.

A run folder ``<run>/`` holds ``job.json`` (the launcher, the current job id and every job id ever
submitted for it) and ``slurm/`` (submitit's pickles and the job logs). Launching a run whose job
is pending or running waits for that job; a run with ``summary.json`` is never submitted again.
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
from submitit.core.utils import UncompletedJobError
from submitit.local.local import LocalJob
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from normae.cluster.resources import num_tasks
from normae.errors import LaunchError
from normae.paths import RunFolder, atomic_write_text

POLL_MAX_S = 300
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
def locked(folder: Path):
    """One launcher at a time decides whether a run needs a new job (two started together submit once)."""
    with (folder / ".launch.lock").open("w") as handle:
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


def restore_summary(job, folder: RunFolder) -> bool:
    """Put back the summary.json that an ended job returned (if it succeeded); whether it did."""
    first = first_task(job)
    if not first.paths.result_pickle.exists():
        return False
    try:
        result = first.result()
    except UncompletedJobError:
        return False
    if not isinstance(result, dict) or not result.get("summary"):
        return False
    atomic_write_text(folder.summary_path, result["summary"])
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


def submit_or_attach(job_function, spec_path: Path, folder: RunFolder, launcher: str, resources: dict):
    """The job to wait for: the recorded one while it is pending or running, else a new submission of
    ``job_function`` (a ``normae.cluster.job.StageJob``); None if the run is finished."""
    submitit_dir = folder.submitit_dir
    submitit_dir.mkdir(parents=True, exist_ok=True)
    with locked(submitit_dir):
        if folder.is_finished():
            return None
        record = folder.read_job_record() or {"submissions": []}
        if "job_id" in record:
            job = job_from_record(record, submitit_dir)
            if still_running(job):
                print(f"[normae] {folder.path}: re-attached to {record['launcher']} job {job.job_id}", file=sys.stderr)
                return job
            if restore_summary(job, folder):
                print(
                    f"[normae] {folder.path}: job {job.job_id} had finished; summary.json restored from its result",
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
    """Wait until the job ends; raise ``LaunchError`` (with its log paths) unless it wrote summary.json."""
    try:
        job.results()
    except UncompletedJobError as error:
        raise LaunchError(f"job {job.job_id} for {folder.path} failed.\n{error}\nLogs: {log_paths(job)}") from None
    if not folder.is_finished():
        raise LaunchError(f"job {job.job_id} ended but {folder.summary_path} is missing. Logs: {log_paths(job)}")


def requeue(job_environment, remaining: int) -> None:
    """Requeue the running SLURM job (submitit's private ``JobEnvironment._requeue``; submitit is pinned for it)."""
    job_environment._requeue(remaining)
