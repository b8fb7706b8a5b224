"""``normae check-data``, ``normae rehearsal-data`` and ``normae fetch-data``: the data a plan needs, checked
before any job is queued, a generated copy of it in the real on-disk formats for the dress rehearsal, and
Fashion-MNIST fetched. They run on a login node (and in the workflow's onstart, before the first job is
submitted); the checks and the writers are in ``normae.data``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from normae.cli.plan import add_plan_options, plan_from_args
from normae.errors import ConfigError
from normae.experiments.data_map import folder_for, needed_datasets


def cmd_check_data(args: argparse.Namespace) -> int:
    """One line per data set the plan needs; exit 1 with every problem and its fix if any."""
    from normae.data.registry import DATASETS
    from normae.datacheck.check import check_dataset, distinct_problems

    plan = plan_from_args(args)
    checks = [
        check_dataset(name, folder_for(plan.data, name), samples=args.samples, seed=args.seed)
        for name in needed_datasets(plan)
        if name in DATASETS
    ]
    for check in checks:
        print(check.line(), flush=True)  # before the problems on stderr, also when both go to one file
    problems = distinct_problems(checks)
    if problems:
        print(f"[normae] check-data: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


def cmd_rehearsal_data(args: argparse.Namespace) -> int:
    """Write the generated copies; print the data map that points at them as one YAML line (for
    snakemake's ``--config data=...``), and with --config-out also write it as a config file."""
    from normae.datagen.rehearsal import write_rehearsal_data

    overwrite = getattr(args, "overwrite", False)
    if args.config_out and Path(args.config_out).exists() and not overwrite:
        raise ConfigError(f"--config-out {args.config_out} exists: give a new file, or --overwrite to replace it")
    folders = write_rehearsal_data(
        Path(args.out), args.train_per_class, args.eval_per_class, seed=args.seed, overwrite=overwrite
    )
    data = {name: str(folder.resolve()) for name, folder in folders.items() if name != "imagenet100"}
    if args.config_out:  # a config file holding the data map, for people and --configfile
        text = "# the data map of the rehearsal's generated sets (normae rehearsal-data)\n"
        Path(args.config_out).write_text(text + yaml.safe_dump({"data": data}, sort_keys=False))
        print(f"[normae] wrote {args.config_out}", file=sys.stderr)
    print(yaml.safe_dump(data, default_flow_style=True, width=10_000).strip())  # for --config data=...
    return 0


def add_check_data(command) -> None:
    check = command(
        "check-data",
        "check every data set a scale's plan reads, before any job is queued",
        "For each set: its folder (from config.yaml's data map or --data), the layout the loader reads, the "
        "class count, the images per split against the published sizes (or a rehearsal copy's manifest) and "
        "that a seeded sample of files decodes. One line per set; exit 1 naming each problem and its fix.",
    )
    add_plan_options(check)
    check.add_argument("--samples", type=int, default=32, help="files decoded per set (a seeded sample)")
    check.add_argument("--seed", type=int, default=0, help="seed of the sample")
    check.set_defaults(func=cmd_check_data)


def add_rehearsal_data(command) -> None:
    rehearsal = command(
        "rehearsal-data",
        "write generated copies of ImageNet and the eight downstream sets in their real on-disk formats",
        "ImageNet-1K's 1000 real wnids with grayscale, CMYK and PNG-named-.JPEG files among the JPEGs, and "
        "the torchvision layouts, each with a manifest of its counts; for `make rehearse`.",
    )
    rehearsal.add_argument("--out", required=True, help="folder to write into")
    rehearsal.add_argument("--train-per-class", type=int, default=2, help="training images per class")
    rehearsal.add_argument("--eval-per-class", type=int, default=1, help="evaluation images per class")
    rehearsal.add_argument("--seed", type=int, default=0, help="seed of the drawings")
    rehearsal.add_argument("--config-out", help="also write the data map here, as a YAML config file")
    rehearsal.add_argument(
        "--overwrite", action="store_true", help="write into a non-empty --out and over an existing --config-out"
    )
    rehearsal.set_defaults(func=cmd_rehearsal_data)


def add_fetch_data(command) -> None:
    fetch = command(
        "fetch-data",
        "fetch Fashion-MNIST into the data cache",
        "From Debian's dataset-fashion-mnist package (apt-get download, no root needed), or a copy of it "
        "installed on this machine; --download allows torchvision's own download instead.",
    )
    fetch.add_argument("dataset", choices=("fashion-mnist",))
    fetch.add_argument("--dest", default="data/fashion-mnist", help="folder to fill")
    fetch.add_argument(
        "--download", action="store_true", help="allow torchvision to download it when apt cannot provide it"
    )
    fetch.set_defaults(func=cmd_fetch_data)


def cmd_fetch_data(args) -> int:
    from normae.data.fetch import fetch_fashion_mnist

    folder = fetch_fashion_mnist(args.dest, allow_download=args.download)
    print(f"[normae] Fashion-MNIST is in {folder}")
    return 0
