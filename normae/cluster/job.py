"""What runs inside a submitit job (local or SLURM): one stage of one spec, as one task of the job.

Importing this module does not import torch: the launcher pickles a ``StageJob`` by reference and
stays light; the stage's modules are imported in the job, when it runs.

Signals. While the training loop runs, its own handlers (``normae.training.signals.StopSignals``)
take SIGTERM, SIGINT and submitit's time-limit / preemption signal (``JobEnvironment.USR_SIG``,
USR2 by default): every task checkpoints at the same optimiser step (the loop agrees on it across
processes), then

- on USR2 (the time limit is near, or a preemption notice) rank 0 requeues the job through submitit
  and every task exits without a result, so the launcher keeps waiting for the requeued job;
- on SIGTERM or SIGINT (the cluster is ending the job: ``scontrol requeue``, preemption,
  ``scancel``) the tasks exit without a result and the cluster decides: a requeued job resumes from the checkpoint,
  a cancelled one is reported by the launcher when it leaves the queue.

Outside the loop (building the model, loading data) submitit's own handlers apply: USR2 makes rank 0
call ``checkpoint()`` (this same call again: the run folder's checkpoint.pt is the state) and requeue.
A job started more than ``max_requeues`` times fails with an error that says so.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

import submitit

from normae.cluster.submitit_adapter import requeue
from normae.paths import RunFolder

REQUEUE_EXIT_CODE = 3  # any non-zero code: the job was requeued and this attempt ends without a result


class RequeueLimitError(RuntimeError):
    pass


def restarts_so_far() -> int:
    """How often SLURM has restarted this job (requeues by us, by preemption or by an administrator)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0"))


def export_distributed_environment() -> None:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for ``normae.training.runtime.setup_distributed``.

    Every task sees all of its node's GPUs and takes ``cuda:LOCAL_RANK``, so CUDA_VISIBLE_DEVICES
    is left alone.
    """
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


class StageJob(submitit.helpers.Checkpointable):
    """Run the spec in ``spec_path`` (its stage) into ``out``, resuming from its checkpoint, with ``threads``
    torch threads per task (None: the job's ``--cpus-per-task``, else the machine's cores).

    Rank 0 also copies the summary to ``slurm/<job id>_summary.json`` (atomically, as JSON): a
    launcher that finds the job over but summary.json gone (Snakemake's ``--rerun-incomplete``
    deletes the outputs of jobs that ran while it was down) puts it back from there instead of
    submitting again. The launcher never reads the job's result pickle, so the returned
    ``{"run_dir", "rank"}`` is only for submitit.

    The training lock of the run folder is the stage's (``normae.stages.common.take_run_folder``):
    rank 0 holds it while the job trains; the launcher waiting on the job holds none.
    """

    def __init__(self, spec_path: str, out: str, max_requeues: int, threads: int | None = None):
        self.spec_path, self.out, self.max_requeues, self.threads = str(spec_path), str(out), max_requeues, threads

    def __call__(self) -> dict:
        job = submitit.JobEnvironment()
        if restarts_so_far() > self.max_requeues:
            raise RequeueLimitError(
                f"job {job.job_id} was requeued {restarts_so_far()} times, more than max_requeues={self.max_requeues}; "
                f"the last checkpoint is in {self.out}: raise max_requeues or timeout_min and launch again"
            )
        export_distributed_environment()

        from normae.spec import load_spec
        from normae.stages import stage_function
        from normae.training.runtime import keep_freed_memory, set_threads
        from normae.training.signals import StopSignals, TrainingInterrupted

        keep_freed_memory()
        set_threads(self.threads)
        spec = load_spec(self.spec_path)
        print(f"[normae] {spec.stage} {spec.run_id()} -> {self.out} ({job})", file=sys.stderr, flush=True)
        # The time-limit / preemption signal also stops the run once every task has checkpointed.
        signals = StopSignals(stop=frozenset({signal.SIGTERM, signal.SIGINT, getattr(signal, "SIG" + job.USR_SIG)}))
        try:
            summary = stage_function(spec.stage)(spec, Path(self.out), resume=True, signals=signals)
        except TrainingInterrupted as stop:
            self.end_attempt(job, stop)
        if job.global_rank == 0:
            RunFolder(self.out).write_job_summary(job.job_id, summary)
        return {"run_dir": self.out, "rank": job.global_rank}

    def end_attempt(self, job, stop) -> NoReturn:
        """After a stop with the checkpoint on disk: requeue (time limit, preemption) or leave it to the cluster."""
        print(f"[normae] {stop}", file=sys.stderr, flush=True)
        if stop.signal in (signal.SIGTERM, signal.SIGINT):
            raise SystemExit(128 + stop.signal)  # 143 after SIGTERM, 130 after SIGINT
        if restarts_so_far() >= self.max_requeues:
            raise RequeueLimitError(
                f"{stop}; not requeued: job {job.job_id} already ran {restarts_so_far() + 1} times (max_requeues="
                f"{self.max_requeues}). Raise max_requeues or timeout_min and launch again to continue"
            )
        if job.global_rank == 0:
            requeue(job, self.max_requeues - restarts_so_far())
        raise SystemExit(REQUEUE_EXIT_CODE)
