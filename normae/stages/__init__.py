"""Stages: a spec in, a finished run folder out. ``pretrain`` (MAE / NoR-MAE), ``transfer``
(fine-tuning, linear probing) and ``segment`` (UperNet on the encoder, mIoU) build the model, data
and training loop for a spec and write the run folder (``normae.paths.RunFolder``); ``knn``
(weighted k-NN on frozen features) is one pass; ``bench`` measures MAE vs NoR-MAE step time and
memory on the job's device.

This ``__init__`` is the torch-free registry, stage name -> entry point, that the command line and
the cluster job read; the stage modules themselves (torch, timm) are imported only when a stage
runs. Stage modules may import only what ``MAY_IMPORT`` names: ``bench`` runs the measurements of
``analysis`` (which never imports a stage) into a run folder.

Of normae it may import exactly ``core``, ``data``, ``training``, ``analysis``, ``spec``, ``paths``,
``errors`` (its ``MAY_IMPORT``, held by tests/test_layout.py).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from normae.spec import STAGES, SpecBase

# Checked by tests/test_layout.py: the normae modules and sub-packages this one may import.
MAY_IMPORT = ("core", "data", "training", "analysis", "spec", "paths", "errors")

# stage -> (module, function): function(spec, run_dir, resume=False, signals=None) -> summary dict
ENTRY_POINTS = {
    "pretrain": ("normae.stages.pretrain", "run_pretrain"),
    "finetune": ("normae.stages.transfer", "run_transfer"),
    "linprobe": ("normae.stages.transfer", "run_transfer"),
    "knn": ("normae.stages.knn", "run_knn"),
    "segment": ("normae.stages.segment", "run_segment"),
    "bench": ("normae.stages.bench", "run_bench_stage"),
}
assert set(ENTRY_POINTS) == set(STAGES), "every stage of normae.spec needs an entry point"
# The final metrics that the one-line summary of a run prints.
SUMMARY_KEYS = ("loss", "loss_rec", "loss_nor", "top1", "top5", "miou", "pixel_accuracy")


def stage_function(stage: str):
    module, name = ENTRY_POINTS[stage]
    return getattr(importlib.import_module(module), name)


def summary_line(summary: dict, out: Path) -> str:
    final = {k: v for k, v in summary.get("final", {}).items() if k in SUMMARY_KEYS}
    return json.dumps({"run_dir": str(out), **final, "step_time_median_s": summary.get("step_time_median_s")})


def run_here(spec: SpecBase, out: Path, resume: bool) -> int:
    """Run a spec in this process; a stopped or failed run says how to continue. Returns the exit status.

    The stage checks the folder's spec (once, under the folder's lock: ``normae.stages.common.decide``)."""
    from normae.training.signals import NonFiniteLossError, TrainingInterrupted

    print(f"[normae] {spec.stage} {spec.run_id()} -> {out}", file=sys.stderr)
    try:
        summary = stage_function(spec.stage)(spec, out, resume=resume)
    except TrainingInterrupted as stop:
        print(f"[normae] {stop}", file=sys.stderr)
        return 128 + stop.signal  # 143 after SIGTERM, 130 after Ctrl-C, as a shell reports them
    except NonFiniteLossError as error:
        print(f"[normae] error: {error}", file=sys.stderr)
        return 1
    print(summary_line(summary, out))
    return 0
