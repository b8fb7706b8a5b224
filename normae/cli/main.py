"""``normae``: the entry point. The parser (every command, in the order ``normae --help`` lists them,
each registered by its family's module) and ``main``: torch is loaded only for a command that trains
in this process, and every ``NormaeError`` ends as one line naming the fix, exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from normae.cli import analysis, bench, data, launch, plan, progress, results, training
from normae.errors import NormaeError

# Every command's registration, in the order `normae --help` lists them.
COMMANDS = (
    training.add_pretrain,
    training.add_evaluations,  # finetune, linprobe, knn, segment
    bench.add_bench,
    bench.add_bench_data,
    launch.add_launch,
    plan.add_plan,
    results.add_summarize,
    plan.add_spec,
    results.add_tables,
    results.add_tables_tex,
    results.add_verdicts,
    results.add_all_runs,
    data.add_check_data,
    data.add_rehearsal_data,
    data.add_fetch_data,
    analysis.add_cnp_stats,
    analysis.add_nor_share,
    analysis.add_pca,
    results.add_figure,
    results.add_compare,
    progress.add_progress,
)
# Commands that train in this process: the others (plan, tables, figure, a launcher that submits a job
# and waits for it on a login node) do not load torch.
TRAINING_COMMANDS = ("pretrain", "finetune", "linprobe", "knn", "segment", "launch", "bench")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default once: appended only where the help text does not state it and it means something."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return super()._get_help_string(action)


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

    for add in COMMANDS:
        add(command)
    return parser


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
