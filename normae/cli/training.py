"""``normae pretrain``, ``finetune``, ``linprobe``, ``knn`` and ``segment``: a stage run from its spec's
options (one per spec field, generated in ``normae.cli.options``) over an optional ``--spec`` file."""

from __future__ import annotations

import argparse
from pathlib import Path

from normae.cli.options import add_spec_fields, add_threads_option, spec_values
from normae.errors import ConfigError
from normae.paths import RUNS_DIR
from normae.spec import FinetuneSpec, KnnSpec, LinprobeSpec, PretrainSpec, SegmentSpec
from normae.stages import run_here

RUN_FILES = "Writes spec.json, checkpoint.pt, metrics.jsonl and, last, summary.json into the output folder."
CLASSIFY = f"Evaluates top-1 / top-5 on the set's official evaluation split after every epoch. {RUN_FILES}"
# (spec class, one-line summary, description) of each evaluation command
EVALUATIONS = (
    (FinetuneSpec, "fine-tune an encoder end to end (MAE protocol)", f"{CLASSIFY} Defaults are the paper's."),
    (LinprobeSpec, "linear-probe a frozen encoder (MAE protocol)", f"{CLASSIFY} Defaults are the paper's."),
    (
        KnnSpec,
        "weighted k-NN accuracy of a frozen encoder (DINO protocol)",
        "Encodes the set's training split (the memory bank) and its evaluation split once; each evaluation "
        "image takes the vote of its k most cosine-similar training images, weighted exp(similarity / "
        "temperature). Reports the cls token and the mean of the patch tokens (top1: the mean). "
        "Writes spec.json and, last, summary.json into the output folder.",
    ),
    (
        SegmentSpec,
        "train UperNet on an encoder for semantic segmentation (MAE's ADE20K protocol)",
        "Evaluates mIoU, pixel accuracy and per-class IoU on the validation split (sliding window) every "
        f"--eval-every epochs and after the last; summary.json also holds the trivial floor. {RUN_FILES}",
    ),
)


def add_spec_options(parser: argparse.ArgumentParser, spec_cls) -> None:
    """``--spec``, ``--out``, ``--resume`` and one ``--option`` per spec field, with its help and default."""
    parser.add_argument("--spec", help="JSON spec file (as written to spec.json); options given here override it")
    parser.add_argument(  # no default: a run started by hand never lands among the workflow's (RUNS_DIR)
        "--out", required=True, help=f"run folder to write into (required; keep it outside {RUNS_DIR}, the workflow's)"
    )
    parser.add_argument("--resume", action="store_true", help="continue exactly from the run folder's checkpoint.pt")
    add_spec_fields(parser.add_argument_group("run specification"), spec_cls)
    add_threads_option(parser)
    parser.set_defaults(spec_cls=spec_cls, func=run_stage)


def add_pretrain(command) -> None:
    pretrain = command(
        "pretrain",
        "pre-train MAE or NoR-MAE",
        f"{RUN_FILES} Options override the --spec file; unset options take the defaults shown.",
    )
    add_spec_options(pretrain, PretrainSpec)


def add_evaluations(command) -> None:
    for spec_cls, summary, description in EVALUATIONS:
        add_spec_options(command(spec_cls.stage, summary, description), spec_cls)


def spec_from_args(args: argparse.Namespace):
    """The spec file (if any) overlaid with every option given on the command line."""
    base = load_spec_file(args.spec) if args.spec else {}
    return args.spec_cls.from_dict({**base, **spec_values(args, args.spec_cls)})


def load_spec_file(path: str) -> dict:
    from normae.atomic import read_json

    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds no spec (a JSON object)")
    return data


def run_stage(args) -> int:
    """Run a stage from the command line (``--spec`` and options); a stopped or failed run says how to continue."""
    spec = spec_from_args(args)
    return run_here(spec, Path(args.out), resume=args.resume)
