"""Run one stage of one spec in its run folder, through a launcher.

``inprocess`` runs it here. The stage modules (torch, timm) are imported only when the stage
runs, so a process that merely submits and waits stays light.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from normae.spec import FinetuneSpec, LinprobeSpec, PretrainSpec

SPEC_CLASSES = {"pretrain": PretrainSpec, "finetune": FinetuneSpec, "linprobe": LinprobeSpec}
STAGE_FUNCTIONS = {
    "pretrain": ("normae.stages", "run_pretrain"),
    "finetune": ("normae.transfer", "run_transfer"),
    "linprobe": ("normae.transfer", "run_transfer"),
}
LAUNCHERS = ("inprocess",)
SUMMARY_KEYS = ("loss", "loss_rec", "loss_nor", "top1", "top5")


def stage_function(stage: str):
    module, name = STAGE_FUNCTIONS[stage]
    return getattr(importlib.import_module(module), name)


def run_here(spec, out: Path, resume: bool) -> int:
    """Run a spec in this process; a stopped or failed run says how to continue. Returns the exit status."""
    from normae.train import NonFiniteLossError, TrainingInterrupted

    print(f"[normae] {spec.stage} {spec.run_id()} -> {out}", file=sys.stderr)
    try:
        summary = stage_function(spec.stage)(spec, out, resume=resume)
    except TrainingInterrupted as stop:
        print(f"[normae] {stop}", file=sys.stderr)
        return 143
    except NonFiniteLossError as error:
        print(f"[normae] error: {error}", file=sys.stderr)
        return 1
    final = {k: v for k, v in summary.get("final", {}).items() if k in SUMMARY_KEYS}
    print(json.dumps({"run_dir": str(out), **final, "step_time_median_s": summary.get("step_time_median_s")}))
    return 0


def launch(stage: str, spec_path: str | Path, out: str | Path, launcher: str = "inprocess") -> int:
    """Run ``spec_path`` (a spec of ``stage``) into ``out``, resuming from its checkpoint if there is one."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; use one of {', '.join(LAUNCHERS)}")
    spec = SPEC_CLASSES[stage].from_json(spec_path)
    return run_here(spec, Path(out), resume=True)


def add_launch_options(parser) -> None:
    parser.add_argument("stage", choices=sorted(SPEC_CLASSES), help="which stage the spec is for")
    parser.add_argument("--spec", required=True, help="JSON spec file")
    parser.add_argument("--out", required=True, help="run folder (resumed from its checkpoint.pt if present)")
    parser.add_argument("--launcher", default="inprocess", choices=LAUNCHERS, help="where the run executes")
