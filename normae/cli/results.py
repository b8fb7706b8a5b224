"""The commands that read finished runs: ``summarize``, ``tables``, ``verdicts``, ``all-runs``, ``figure`` and
``compare``. Each handler imports its ``normae.report`` module when it runs (pandas, matplotlib)."""

from __future__ import annotations

import sys
from pathlib import Path

from normae.atomic import atomic_write_text
from normae.cli.plan import add_plan_options, plan_from_args
from normae.errors import ConfigError, MissingResultError
from normae.experiments.config import SWEEP_TERMS
from normae.paths import ALL_RUNS_CSV, ANALYSIS_DIR, RUNS_DIR, TABLES_DIR


def add_summarize(command) -> None:
    summarize = command("summarize", "print the final metrics of finished runs side by side")
    summarize.add_argument("runs", nargs="+", help="run folders holding summary.json")
    summarize.set_defaults(func=cmd_summarize)


def cmd_summarize(args) -> int:
    from normae.report.final_metrics import final_metrics_table

    print(final_metrics_table(args.runs))
    return 0


def add_tables(command) -> None:
    tables = command(
        "tables",
        "write the paper's tables with our numbers from finished runs",
        f"Writes {TABLES_DIR}/<name>.{{csv,md,tex,html}} and <name>.csv.html (every column as a page): per row "
        "the paper's value, ours (mean with its 95 % t "
        "interval over seeds, or ± the binomial standard error of one evaluation), the scale, ours minus the "
        "paper's, and for NoR-MAE rows the paired gain over MAE with its interval and a verdict.",
    )
    tables.add_argument("tables", nargs="*", help="table file names (table1 ... ablation; default: all)")
    add_plan_options(tables)
    tables.add_argument("--root", default=".", help=f"folder holding {RUNS_DIR} and {ANALYSIS_DIR}")
    tables.add_argument("--out", default=TABLES_DIR, help="folder to write the tables into")
    tables.set_defaults(func=cmd_tables)


def cmd_tables(args) -> int:
    from normae.report.html import csv_page
    from normae.report.tables import table_frame, write_table

    plan = plan_from_args(args)
    tables = {table.file: table for table in plan.tables.values()}
    names = args.tables or list(tables)
    unknown = sorted(set(names) - set(tables))
    if unknown:
        raise ConfigError(f"unknown table(s) {unknown}; known: {', '.join(tables)}")
    for name in names:
        paths = write_table(table_frame(tables[name], plan, args.root), tables[name], plan, args.out)
        page = paths[0].with_name(f"{paths[0].name}.html")  # the report shows HTML where a .csv would download
        atomic_write_text(page, csv_page(paths[0]))
        for path in [*paths, page]:
            print(f"[normae] wrote {path}", file=sys.stderr)
    return 0


def add_tables_tex(command) -> None:
    tables_tex = command(
        "tables-tex",
        "write one LaTeX document that inputs every table's .tex (compile it in its folder: pdflatex all.tex)",
    )
    tables_tex.add_argument("tables", nargs="+", help=f"the tables' .tex files ({TABLES_DIR}/<name>.tex)")
    tables_tex.add_argument("--out", required=True, help=f"the document to write ({TABLES_DIR}/all.tex)")
    tables_tex.set_defaults(func=cmd_tables_tex)


def cmd_tables_tex(args) -> int:
    from normae.report.latex import document

    missing = [path for path in args.tables if not Path(path).is_file()]
    if missing:
        raise MissingResultError(f"no table {', '.join(missing)}: run `normae tables` (or `snakemake`) first")
    atomic_write_text(Path(args.out), document(args.tables, Path(args.out)))
    print(f"[normae] wrote {args.out}", file=sys.stderr)
    return 0


def add_verdicts(command) -> None:
    verdicts = command(
        "verdicts",
        "write the report's first page: the NoR-MAE vs MAE verdicts per table, as HTML",
        "Reads tables written by `normae tables`; per table, how many distinct run pairs earned each "
        "verdict and the mean paired gain beside the paper's. A table without verdicts is left out.",
    )
    verdicts.add_argument("tables", nargs="+", help=f"table CSVs ({TABLES_DIR}/<name>.csv)")
    verdicts.add_argument("--out", required=True, help="HTML file to write")
    verdicts.set_defaults(func=cmd_verdicts)


def cmd_verdicts(args) -> int:
    from normae.report.html import verdicts_page

    missing = [path for path in args.tables if not Path(path).is_file()]
    if missing:
        raise MissingResultError(f"no table CSV {', '.join(missing)}: run `normae tables` (or `snakemake`) first")
    atomic_write_text(Path(args.out), verdicts_page(args.tables))
    print(f"[normae] wrote {args.out}", file=sys.stderr)
    return 0


def add_all_runs(command) -> None:
    all_runs = command("all-runs", "write one tidy CSV: a row per planned run with its spec and final metrics")
    add_plan_options(all_runs)
    all_runs.add_argument("--root", default=".", help=f"folder holding {RUNS_DIR}")
    all_runs.add_argument("--out", default=ALL_RUNS_CSV, help="CSV to write")
    all_runs.set_defaults(func=cmd_all_runs)


def cmd_all_runs(args) -> int:
    from normae.report.tables import all_runs_frame

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    all_runs_frame(plan_from_args(args), args.root).to_csv(args.out, index=False)
    print(f"[normae] wrote {args.out}", file=sys.stderr)
    return 0


def add_figure(command) -> None:
    figure = command(
        "figure",
        "draw one of the paper's figures as PNG",
        "cnp-similarity: cnp-stats JSONs. pca: pca .npz files (MAE and NoR-MAE side by side). "
        "variants: pre-training run folders (and --finetune runs). sweep: one table CSV with --x. "
        "evidence: the evidence table's CSV (NoR-MAE minus MAE against lambda). pull: NoR-MAE pre-training run "
        "folders (their nor_grad_share over training; --reference adds a pair on one schedule).",
    )
    figure.add_argument("kind", choices=("cnp-similarity", "pca", "variants", "sweep", "evidence", "pull"))
    figure.add_argument("inputs", nargs="+", help="the files or run folders the figure is drawn from")
    figure.add_argument("--out", required=True, help="PNG file to write")
    figure.add_argument("--labels", nargs="+", help="pca: one panel title per input")
    figure.add_argument("--finetune", nargs="+", help="variants: fine-tuning run folders for the top-1 panel")
    figure.add_argument("--x", choices=SWEEP_TERMS, help="sweep: the swept setting")
    figure.add_argument(
        "--reference", help="pull: the .csv written beside another pull figure (a paper-geometry run and its stand-in)"
    )
    figure.set_defaults(func=cmd_figure)


def cmd_figure(args) -> int:
    from normae.report import figures, pull_figure, sweep_figures

    if args.kind == "cnp-similarity":
        out = figures.cnp_similarity_figure(args.inputs, args.out)
    elif args.kind == "pca":
        out = figures.pca_figure(args.inputs, args.out, labels=args.labels)
    elif args.kind == "variants":
        out = figures.variants_figure(args.inputs, args.finetune or [], args.out)
    elif args.kind == "evidence":
        if len(args.inputs) != 1:
            raise ConfigError("figure evidence takes one table CSV")
        out = sweep_figures.evidence_figure(args.inputs[0], args.out)
    elif args.kind == "pull":
        out = pull_figure.pull_figure(args.inputs, args.out, args.reference)
    else:
        if len(args.inputs) != 1 or args.x is None:
            raise ConfigError("figure sweep takes one table CSV and --x")
        out = sweep_figures.sweep_figure(args.inputs[0], args.x, args.out)
    print(f"[normae] wrote {out}")
    return 0


def add_compare(command) -> None:
    compare = command("compare", "show two runs side by side: spec diff, final metrics, curves")
    compare.add_argument("run_a", help="run folder A")
    compare.add_argument("run_b", help="run folder B")
    compare.add_argument("--plot", help="also draw the curves into this PNG")
    compare.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from normae.report.compare import compare_plot, compare_text

    print(compare_text(args.run_a, args.run_b), end="")
    if args.plot:
        print(f"[normae] wrote {compare_plot(args.run_a, args.run_b, args.plot)}")
    return 0
