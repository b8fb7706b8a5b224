"""``normae plan`` (the plan's report: ``normae.experiments.plan_report``) and ``normae spec`` (one planned
run's spec file), and the plan options that every command reading the plan takes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from normae.atomic import atomic_write_text
from normae.errors import ConfigError
from normae.experiments.config import CONFIG_DIR, load_experiments, load_scale, read_reported, rehearsed
from normae.experiments.data_map import read_data_map, with_overrides
from normae.experiments.plan import Plan, expand
from normae.experiments.plan_report import check_gpus, plan_document, plan_text, select_tables


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    """What every command that reads the plan takes: the scale, seeds, config folder, rehearsal, data map."""
    parser.add_argument("--scale", default="tiny", help="config/scales/<NAME>.yaml (default: tiny)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="seeds, a run pair each (default: the scale's seeds, else 0)"
    )
    parser.add_argument(
        "--config-dir",
        default=str(CONFIG_DIR),
        help="folder holding experiments.yaml, reported.csv and scales/ (default: the repository's)",
    )
    parser.add_argument(
        "--rehearsal",
        action="store_true",
        help="the plan cut to a step per run on generated data (config/rehearsal.yaml; `make rehearse`)",
    )
    parser.add_argument(
        "--data",
        action="append",
        metavar="NAME=FOLDER",
        help="where a data set lies, over config.yaml's data map (e.g. imagenet1k=/datasets/imagenet); repeat",
    )


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The plan that the plan options (``add_plan_options``) name."""
    config_dir = Path(args.config_dir)
    scale = load_scale(args.scale, config_dir)
    return expand(
        load_experiments(config_dir / "experiments.yaml"),
        rehearsed(scale, config_dir) if getattr(args, "rehearsal", False) else scale,
        read_reported(config_dir / "reported.csv"),
        seeds=args.seeds,
        data=with_overrides(read_data_map(config_dir), getattr(args, "data", None)),
    )


def add_plan_output_options(parser: argparse.ArgumentParser) -> None:
    """`normae plan`'s own options: which tables, and the run ids or a JSON document instead of the summary."""
    parser.add_argument(
        "--table",
        action="append",
        dest="tables",
        metavar="TABLE",
        help="only this table (its name, T5, or its file, table5); repeat for several",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        metavar="N",
        help="add the wall time on N GPUs to the summary: device-hours / N (perfect packing, a lower bound)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--ids", action="store_true", help="print the run ids the tables need, one per line")
    output.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document: every run's id, stage, full spec and the paper rows it serves",
    )


def add_plan(command) -> None:
    plan = command(
        "plan",
        "expand the paper's tables into the runs a scale needs",
        "Prints, per table, the runs it needs at a scale, which are shared, the rows not run and why, and "
        "a device-hour estimate.",
    )
    add_plan_options(plan)
    add_plan_output_options(plan)
    plan.set_defaults(func=print_plan)


def print_plan(args: argparse.Namespace) -> int:
    """`normae plan --scale NAME`: what each table needs at that scale (or its run ids, or the plan as JSON)."""
    gpus = getattr(args, "gpus", None)
    if gpus is not None and check_gpus(gpus) and (getattr(args, "ids", False) or getattr(args, "json", False)):
        raise ConfigError("--gpus adds a line to the summary: drop --ids / --json to see it")
    whole = plan_from_args(args)
    plan = select_tables(whole, getattr(args, "tables", None))
    if getattr(args, "ids", False):
        print("\n".join([*plan.pretrain, *plan.evaluations, *plan.measurements]))
    elif getattr(args, "json", False):
        print(json.dumps(plan_document(plan), indent=1))
    else:
        print(plan_text(plan, whole, gpus))
    return 0


def add_spec(command) -> None:
    spec = command("spec", "write the spec file of one planned run (what the workflow launches)")
    spec.add_argument("run", help="run id, as `normae plan` and the workflow name it")
    add_plan_options(spec)
    spec.add_argument("--out", required=True, help="JSON file to write")
    spec.set_defaults(func=cmd_spec)


def cmd_spec(args) -> int:
    atomic_write_text(Path(args.out), plan_from_args(args).spec(args.run).to_json())
    return 0
