"""Run one stage of one spec in its run folder, through a launcher.

``inprocess`` runs it here; ``local`` and ``slurm`` submit it through submitit
(``normae.cluster.submitit_adapter``) and wait for the job. The stage modules (torch, timm) are imported only
where the stage runs, so a process that merely submits and waits stays light.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from normae.spec import FinetuneSpec, LinprobeSpec, PretrainSpec

SPEC_CLASSES = {"pretrain": PretrainSpec, "finetune": FinetuneSpec, "linprobe": LinprobeSpec}
STAGE_FUNCTIONS = {
    "pretrain": ("normae.stages.pretrain", "run_pretrain"),
    "finetune": ("normae.stages.transfer", "run_transfer"),
    "linprobe": ("normae.stages.transfer", "run_transfer"),
}
LAUNCHERS = ("inprocess", "local", "slurm")
SUMMARY_KEYS = ("loss", "loss_rec", "loss_nor", "top1", "top5")


def stage_function(stage: str):
    module, name = STAGE_FUNCTIONS[stage]
    return getattr(importlib.import_module(module), name)


def run_here(spec, out: Path, resume: bool) -> int:
    """Run a spec in this process; a stopped or failed run says how to continue. Returns the exit status."""
    from normae.training.loop import NonFiniteLossError, TrainingInterrupted

    print(f"[normae] {spec.stage} {spec.run_id()} -> {out}", file=sys.stderr)
    try:
        summary = stage_function(spec.stage)(spec, out, resume=resume)
    except TrainingInterrupted as stop:
        print(f"[normae] {stop}", file=sys.stderr)
        return 143
    except NonFiniteLossError as error:
        print(f"[normae] error: {error}", file=sys.stderr)
        return 1
    print_summary_line(summary, out)
    return 0


def print_summary_line(summary: dict, out: Path) -> None:
    final = {k: v for k, v in summary.get("final", {}).items() if k in SUMMARY_KEYS}
    print(json.dumps({"run_dir": str(out), **final, "step_time_median_s": summary.get("step_time_median_s")}))


def run_as_job(stage: str, spec_path: Path, out: Path, launcher: str, resources: dict | None) -> int:
    """Submit (or re-attach to) the run's job and wait for it; 1 with the job's log paths if it fails."""
    from normae.cluster.submitit_adapter import LaunchError, resources_from, submit_or_attach, wait_for

    job = submit_or_attach(stage, spec_path.resolve(), out.resolve(), launcher, resources_from(resources))
    if job is not None:
        try:
            wait_for(job, out)
        except LaunchError as error:
            print(f"[normae] error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"[normae] stopped waiting; job {job.job_id} goes on: launch again to re-attach", file=sys.stderr)
            return 130
    print_summary_line(json.loads((out / "summary.json").read_text()), out)
    return 0


def launch(
    stage: str, spec_path: str | Path, out: str | Path, launcher: str = "inprocess", resources: dict | None = None
) -> int:
    """Run ``spec_path`` (a spec of ``stage``) into ``out``, resuming from its checkpoint if there is one.

    ``resources`` (``local`` / ``slurm``): the job's SLURM resources, see ``normae.cluster.submitit_adapter.RESOURCE_DEFAULTS``.
    A run whose ``summary.json`` exists is left as it is. Returns the exit status.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; use one of {', '.join(LAUNCHERS)}")
    spec = SPEC_CLASSES[stage].from_json(spec_path)  # a bad spec fails here, not in a job hours later
    out = Path(out)
    if launcher == "inprocess":
        return run_here(spec, out, resume=True)
    if (out / "summary.json").exists():
        print(f"[normae] {out} is already finished; nothing to submit", file=sys.stderr)
        print_summary_line(json.loads((out / "summary.json").read_text()), out)
        return 0
    return run_as_job(stage, Path(spec_path), out, launcher, resources)


def resources_json(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--slurm is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--slurm must be a JSON object, e.g. '{\"partition\": \"gpu\", \"gpus_per_node\": 8}'")
    return value


def add_launch_options(parser) -> None:
    parser.add_argument("stage", choices=sorted(SPEC_CLASSES), help="which stage the spec is for")
    parser.add_argument("--spec", required=True, help="JSON spec file")
    parser.add_argument("--out", required=True, help="run folder (resumed from its checkpoint.pt if present)")
    parser.add_argument(
        "--launcher", default="inprocess", choices=LAUNCHERS,
        help="where the run executes: here, a submitit job on this machine, or a SLURM job",
    )
    parser.add_argument(
        "--slurm", type=resources_json, default=None, metavar="JSON",
        help="the job's resources (local/slurm): partition, account, qos, nodes, gpus_per_node, tasks_per_node, "
        "cpus_per_task, mem_gb, timeout_min, constraint, additional_parameters (extra sbatch options), "
        "max_requeues, signal_delay_s",
    )
