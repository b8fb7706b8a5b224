"""``normae launch``: one spec file run in its run folder through a launcher (what the workflow calls);
the launching itself is ``normae.cluster.launch``."""

from __future__ import annotations

import argparse
import json

from normae.cli.options import add_threads_option
from normae.cluster.launch import LAUNCHERS, launch
from normae.cluster.resources import RESOURCE_DEFAULTS


def resources_json(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--slurm is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            '--slurm must be a JSON object, e.g. \'{"partition": "gpu", "gpus_per_node": 8}\''
        )
    return value


def add_launch(command) -> None:
    parser = command(
        "launch",
        "run one spec file in its run folder through a launcher (what the workflow calls)",
        "The spec's stage field says which stage runs. Resumes from the folder's checkpoint if "
        "there is one; a folder holding another spec is refused, one holding summary.json is left as it is.",
    )
    parser.add_argument("--spec", required=True, help="JSON spec file (its stage field says which stage runs)")
    parser.add_argument("--out", required=True, help="run folder (resumed from its checkpoint if present)")
    parser.add_argument(
        "--launcher",
        default="inprocess",
        choices=LAUNCHERS,
        help="where the run executes: here, a submitit job on this machine, or a SLURM job",
    )
    parser.add_argument(
        "--slurm",
        type=resources_json,
        default=None,
        metavar="JSON",
        help="the job's resources (local/slurm) as a JSON object; keys: " + ", ".join(RESOURCE_DEFAULTS),
    )
    add_threads_option(parser)
    parser.set_defaults(func=cmd_launch)


def cmd_launch(args) -> int:
    return launch(args.spec, args.out, launcher=args.launcher, resources=args.slurm, threads=args.threads)
