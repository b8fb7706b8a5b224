"""``normae`` command line: one front for every command (torch-free).

Training commands (pretrain, finetune, linprobe, knn, segment, bench, and launch when it runs the stage here)
import torch when they run; the others (plan, spec, tables, figure, a launcher that submits a job
and waits for it) never do. Every ``NormaeError`` ends as one line naming the fix, exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import sys
import typing

from normae.bench_options import add_bench_arguments, add_bench_data_command
from normae.cluster.launch import add_launch_options
from normae.commands import (
    cmd_all_runs,
    cmd_bench,
    cmd_cnp_stats,
    cmd_compare,
    cmd_fetch_data,
    cmd_figure,
    cmd_launch,
    cmd_nor_share,
    cmd_pca,
    cmd_spec,
    cmd_summarize,
    cmd_tables,
    cmd_verdicts,
    run_stage,
)
from normae.data.registry import ANALYSIS_SOURCES
from normae.errors import NormaeError
from normae.experiments.config import CONFIG_DIR, SWEEP_TERMS
from normae.experiments.data_commands import add_data_commands
from normae.experiments.summary import add_plan_options, add_plan_output_options, print_plan
from normae.paths import (
    ALL_RUNS_CSV,
    ANALYSIS_DIR,
    RUNS_DIR,
    TABLES_DIR,
)
from normae.spec import FinetuneSpec, KnnSpec, LinprobeSpec, PretrainSpec, SegmentSpec


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default once: appended only where the help text does not state it and it means something."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return super()._get_help_string(action)


def _field_type(spec_cls, field: dataclasses.Field):
    """(argparse type, choices) of a spec field: Optional unwrapped, a Literal as its choices."""
    hint = typing.get_type_hints(spec_cls)[field.name]
    if typing.get_origin(hint) is typing.Literal:
        return str, typing.get_args(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), None


def add_spec_options(parser: argparse.ArgumentParser, spec_cls) -> None:
    """``--spec``, ``--out``, ``--resume`` and one ``--option`` per spec field, with its help and default."""
    parser.add_argument("--spec", help="JSON spec file (as written to spec.json); options given here override it")
    parser.add_argument("--out", help=f"run folder (default: {RUNS_DIR}/<run id>)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from the run folder's checkpoint.pt")
    group = parser.add_argument_group("run specification")
    for field in dataclasses.fields(spec_cls):
        flag = "--" + field.name.replace("_", "-")
        kind, choices = _field_type(spec_cls, field)
        help_text = field.metadata["help"]
        if "default" not in help_text and field.default is not None:
            help_text += f" (default: {field.default})"
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            metavar = None if choices else field.name.upper()
            group.add_argument(flag, type=kind, choices=choices, default=None, metavar=metavar, help=help_text)
    add_threads_option(parser)
    parser.set_defaults(spec_cls=spec_cls)


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: the job's --cpus-per-task under SLURM, else this machine's cores; "
        "the workflow passes each job its `threads`)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normae", description="Reproduce NoR-MAE and compare it with MAE.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, description: str = ""):
        """A subcommand with a one-line summary (in `normae --help`) and a description (in its own --help)."""
        return commands.add_parser(
            name,
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]}. {description}".strip(),
            formatter_class=HelpFormatter,
        )

    run_files = "Writes spec.json, checkpoint.pt, metrics.jsonl and, last, summary.json into the output folder."
    pretrain = command(
        "pretrain",
        "pre-train MAE or NoR-MAE",
        f"{run_files} Options override the --spec file; unset options take the defaults shown.",
    )
    add_spec_options(pretrain, PretrainSpec)
    pretrain.set_defaults(func=run_stage)

    classify = f"Evaluates top-1 / top-5 on the set's official evaluation split after every epoch. {run_files}"
    for spec_cls, summary, description in (
        (FinetuneSpec, "fine-tune an encoder end to end (MAE protocol)", f"{classify} Defaults are the paper's."),
        (LinprobeSpec, "linear-probe a frozen encoder (MAE protocol)", f"{classify} Defaults are the paper's."),
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
            f"--eval-every epochs and after the last; summary.json also holds the trivial floor. {run_files}",
        ),
    ):
        evaluation = command(spec_cls.stage, summary, description)
        add_spec_options(evaluation, spec_cls)
        evaluation.set_defaults(func=run_stage)

    bench = command(
        "bench",
        "time MAE vs NoR-MAE (and SupMAE, DMAE) training steps",
        "Times the methods' training steps interleaved in one process on random images and prints one JSON "
        "line: median step time, images/s, FLOPs, MFU and peak memory of each, the NoR-MAE / MAE and / DMAE "
        "ratios; with --loader and --data also the loader's images/s alone.",
    )
    add_bench_arguments(bench)
    add_threads_option(bench)
    bench.set_defaults(func=cmd_bench)
    add_bench_data_command(command)

    launch_parser = command(
        "launch",
        "run one spec file in its run folder through a launcher (what the workflow calls)",
        "The spec's stage field says which stage runs. Resumes from the folder's checkpoint if "
        "there is one; a folder holding another spec is refused, one holding summary.json is left as it is.",
    )
    add_launch_options(launch_parser)
    add_threads_option(launch_parser)
    launch_parser.set_defaults(func=cmd_launch)

    plan = command(
        "plan",
        "expand the paper's tables into the runs a scale needs",
        "Prints, per table, the runs it needs at a scale, which are shared, the rows not run and why, and "
        "a device-hour estimate.",
    )
    add_plan_options(plan)
    add_plan_output_options(plan)
    plan.set_defaults(func=print_plan)

    summarize = command("summarize", "print the final metrics of finished runs side by side")
    summarize.add_argument("runs", nargs="+", help="run folders holding summary.json")
    summarize.set_defaults(func=cmd_summarize)

    spec = command("spec", "write the spec file of one planned run (what the workflow launches)")
    spec.add_argument("run", help="run id, as `normae plan` and the workflow name it")
    add_plan_options(spec)
    spec.add_argument("--out", required=True, help="JSON file to write")
    spec.set_defaults(func=cmd_spec)

    tables = command(
        "tables",
        "write the paper's tables with our numbers from finished runs",
        f"Writes {TABLES_DIR}/<name>.{{csv,md,tex,html}}: per row the paper's value, ours (mean with its 95 % t "
        "interval over seeds, or ± the binomial standard error of one evaluation), the scale, ours minus the "
        "paper's, and for NoR-MAE rows the paired gain over MAE with its interval and a verdict.",
    )
    tables.add_argument("tables", nargs="*", help="table file names (table1 ... ablation; default: all)")
    add_plan_options(tables)
    tables.add_argument("--root", default=".", help=f"folder holding {RUNS_DIR} and {ANALYSIS_DIR}")
    tables.add_argument("--out", default=TABLES_DIR, help="folder to write the tables into")
    tables.set_defaults(func=cmd_tables)

    verdicts = command(
        "verdicts",
        "write the report's first page: the NoR-MAE vs MAE verdicts per table, as HTML",
        "Reads tables written by `normae tables`; per table, how many distinct run pairs earned each "
        "verdict and the mean paired gain beside the paper's. A table without verdicts is left out.",
    )
    verdicts.add_argument("tables", nargs="+", help=f"table CSVs ({TABLES_DIR}/<name>.csv)")
    verdicts.add_argument("--out", required=True, help="HTML file to write")
    verdicts.set_defaults(func=cmd_verdicts)

    all_runs = command("all-runs", "write one tidy CSV: a row per planned run with its spec and final metrics")
    add_plan_options(all_runs)
    all_runs.add_argument("--root", default=".", help=f"folder holding {RUNS_DIR}")
    all_runs.add_argument("--out", default=ALL_RUNS_CSV, help="CSV to write")
    all_runs.set_defaults(func=cmd_all_runs)

    add_data_commands(command)  # check-data, rehearsal-data

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

    cnp_stats = command(
        "cnp-stats",
        "Figure 3: cosine similarity of image patches with their closest neighbour patch",
        "Cosine similarity of every image patch (pixels) with its closest neighbour in its 3x3 window, "
        "over a seeded choice of images; writes a JSON with mean, min, max, quantiles and a histogram.",
    )
    cnp_stats.add_argument(
        "--source",
        required=True,
        choices=ANALYSIS_SOURCES,
        help="images: sklearn_samples = crops of scikit-learn's two sample photographs",
    )
    cnp_stats.add_argument("--images", type=int, default=4096, help="number of images (the paper: 4096)")
    cnp_stats.add_argument("--img-size", type=int, required=True, help="image (crop) size in pixels")
    cnp_stats.add_argument("--patch-size", type=int, required=True, help="patch size in pixels")
    cnp_stats.add_argument(
        "--pixels",
        choices=("raw", "normalized"),
        default="raw",
        help="raw [0, 1] intensities, or normalised with the data set's mean and std",
    )
    cnp_stats.add_argument(
        "--wrap",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="3x3 window wraps around the image border (torus), as in training",
    )
    cnp_stats.add_argument("--data-root", help="data folder (needed for the ImageNets)")
    cnp_stats.add_argument("--seed", type=int, default=0, help="seed of the choice of images")
    cnp_stats.add_argument("--out", required=True, help="JSON file to write")
    cnp_stats.set_defaults(func=cmd_cnp_stats)

    nor_share = command(
        "nor-share",
        "the NoR term's share of the gradient at initialisation: paper geometry vs a scale's rows",
        "nor_grad_share = ||grad(lam L_nor)|| / ||grad(L_rec)|| at initialisation, the mean over seeded inits on the "
        "first Fashion-MNIST test images. --paper measures the paper's geometry (its model at 224 px) of every "
        "NoR-MAE row of the scales and writes config/nor_share_paper.csv; without it, each row's stand-in is "
        "measured against that file and must lie within 0.5x-2x (exit 1 otherwise).",
    )
    nor_share.add_argument("--scales", nargs="+", default=["tiny", "gpu", "cpu"], help="scales whose rows to check")
    nor_share.add_argument("--paper", action="store_true", help="measure the paper geometries and write the file")
    nor_share.add_argument("--images", type=int, default=8, help="probe images (default: 8)")
    nor_share.add_argument("--probe-seeds", type=int, nargs="+", default=[0, 1, 2], help="inits averaged over")
    nor_share.add_argument("--data-root", help="Fashion-MNIST folder (default: looked up)")
    nor_share.add_argument("--threads", type=int, help="torch threads")
    nor_share.add_argument("--out", help="--paper: the CSV to write (default: <config-dir>/nor_share_paper.csv)")
    nor_share.add_argument(
        "--config-dir", default=str(CONFIG_DIR), help="folder of experiments.yaml, scales/ and nor_share_paper.csv"
    )
    nor_share.set_defaults(func=cmd_nor_share, seeds=None)

    pca = command(
        "pca",
        "Figures 7-8: PCA of visible vs closest-neighbour features of a pre-trained encoder",
        "Encodes masked images with a pre-training run's encoder, and separately their visible patches' "
        "closest neighbours; projects both (L2-normalised) jointly to 2-D. Writes OUT (.npz) and OUT with .json.",
    )
    pca.add_argument("--run", required=True, help="pre-training run folder (spec.json, checkpoint.pt)")
    pca.add_argument("--images", type=int, default=16, help="number of images from the evaluation split")
    pca.add_argument("--dataset", choices=ANALYSIS_SOURCES, help="image source (default: the run's pre-training set)")
    pca.add_argument("--data-root", help="data folder (default: the run's)")
    pca.add_argument("--seed", type=int, default=0, help="seed of the images and the mask")
    pca.add_argument("--out", required=True, help=".npz file to write")
    pca.set_defaults(func=cmd_pca)

    figure = command(
        "figure",
        "draw one of the paper's figures as PNG",
        "cnp-similarity: cnp-stats JSONs. pca: pca .npz files (MAE and NoR-MAE side by side). "
        "variants: pre-training run folders (and --finetune runs). sweep: one table CSV with --x. "
        "evidence: the evidence table's CSV (NoR-MAE minus MAE against lambda).",
    )
    figure.add_argument("kind", choices=("cnp-similarity", "pca", "variants", "sweep", "evidence"))
    figure.add_argument("inputs", nargs="+", help="the files or run folders the figure is drawn from")
    figure.add_argument("--out", required=True, help="PNG file to write")
    figure.add_argument("--labels", nargs="+", help="pca: one panel title per input")
    figure.add_argument("--finetune", nargs="+", help="variants: fine-tuning run folders for the top-1 panel")
    figure.add_argument("--x", choices=SWEEP_TERMS, help="sweep: the swept setting")
    figure.set_defaults(func=cmd_figure)

    compare = command("compare", "show two runs side by side: spec diff, final metrics, curves")
    compare.add_argument("run_a", help="run folder A")
    compare.add_argument("run_b", help="run folder B")
    compare.add_argument("--plot", help="also draw the curves into this PNG")
    compare.set_defaults(func=cmd_compare)
    return parser


# Commands that train in this process: the others (plan, tables, figure, a launcher that submits a job
# and waits for it on a login node) do not load torch.
TRAINING_COMMANDS = ("pretrain", "finetune", "linprobe", "knn", "segment", "launch", "bench")


def trains_here(args: argparse.Namespace) -> bool:
    return args.command in TRAINING_COMMANDS and getattr(args, "launcher", "inprocess") == "inprocess"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if trains_here(args):
            from normae.training.runtime import keep_freed_memory, set_threads

            keep_freed_memory()
            set_threads(args.threads)
        return args.func(args)
    except NormaeError as error:
        print(f"normae {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `normae plan | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:  # a full disk anywhere else (a training run names its file and checkpoint itself)
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {error.filename}" if error.filename else ""
        print(
            f"normae {args.command}: error: the disk is full ({error.strerror}){where}: files written before "
            "are kept; free some space and run the same command again",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
