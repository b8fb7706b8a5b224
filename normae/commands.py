"""What each ``normae`` command does, as thin functions of the parsed arguments (torch-free when loaded).

Each imports the modules it needs when it runs, so a command that plans, tabulates or submits a job
never loads torch. The parser is in ``normae.cli``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from normae.atomic import atomic_write_json, atomic_write_text
from normae.cluster.launch import launch
from normae.errors import ConfigError, MissingResultError
from normae.paths import ResultsLayout
from normae.spec import BenchSpec
from normae.stages import run_here


def spec_from_args(args: argparse.Namespace):
    """The spec file (if any) overlaid with every option given on the command line."""
    base = load_spec_file(args.spec) if args.spec else {}
    for field in dataclasses.fields(args.spec_cls):
        value = getattr(args, field.name)
        if value is not None:
            base[field.name] = value
    return args.spec_cls.from_dict(base)


def load_spec_file(path: str) -> dict:
    from normae.atomic import read_json

    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds no spec (a JSON object)")
    return data


def run_stage(args) -> int:
    """Run a stage from the command line (``--spec`` and options); a stopped or failed run says how to continue."""
    spec = spec_from_args(args)
    out = Path(args.out) if args.out else ResultsLayout().run(spec.run_id()).path
    return run_here(spec, out, resume=args.resume)


def cmd_launch(args) -> int:
    return launch(args.spec, args.out, launcher=args.launcher, resources=args.slurm, threads=args.threads)


def cmd_bench(args) -> int:
    """`normae bench`: the interleaved model measurement and, with --loader or --data, the loader alone;
    one JSON line on stdout, a readable summary on stderr."""
    if args.loader and not args.data:
        raise ConfigError(f"--loader {args.loader} needs --data: an image folder (normae bench-data --out FOLDER)")
    if args.loader_only and not args.data:
        raise ConfigError("--loader-only needs --data (and --loader): there is nothing else to time")
    from normae.stages.bench import measure

    spec = BenchSpec(
        model=args.model,
        img_size=args.img_size,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        lam=args.lam,
        cnp=args.cnp,
        methods=args.methods,
        teacher_model=args.teacher_model,
        amp=args.amp,
        compile=args.compile,
        loader=(args.loader or "torchvision") if args.data else None,
        data_root=args.data,
    )
    # the command's own loader knobs (None: the CPUs, at most 16), beside the spec's
    loader_options = {
        "images": args.loader_images,
        "warmup_batches": args.loader_warmup,
        "workers": args.loader_workers,
    }
    result = measure(spec, args.device, models=not args.loader_only, **loader_options)
    print(json.dumps(result))
    for line in bench_lines(result):
        print(f"[normae] bench: {line}", file=sys.stderr)
    if args.out:
        atomic_write_json(args.out, result)
    return 0


def bench_lines(result: dict) -> list[str]:
    """The bench's numbers in words: each method's images/s, MFU and memory, the ratios, the loader."""
    lines = []
    if "methods" in result:
        lines.append(
            f"{result['model']} {result['img_size']} px batch {result['batch_size']} on {result['device']}, "
            f"precision {result['precision']}, compile {result['compile']}, fused attention {result['fused_attention']}"
        )
        for name in result["methods"]:
            method = result[name]
            share = f"{100 * method['mfu']:.1f} %" if method["mfu"] is not None else "n/a"
            memory = method["peak_memory_mib"]
            lines.append(
                f"{name}: {method['images_per_s']:.1f} images/s, MFU {share}, "
                f"peak memory {'n/a' if memory is None else f'{memory:.0f} MiB'}"
            )
        if result.get("mfu_note"):
            lines.append(result["mfu_note"])
        if "nor_over_mae_time" in result:
            memory = result["nor_over_mae_memory"]
            lines.append(
                f"NoR-MAE / MAE: time {result['nor_over_mae_time']:.3f}, "
                f"memory {'n/a' if memory is None else f'{memory:.3f}'}"
            )
    if "loader_throughput" in result:
        loader = result["loader_throughput"]
        lines.append(
            f"loader {loader['loader']} ({loader['decode_device']} decode, {loader['workers']} workers): "
            f"{loader['images_per_s']:.1f} images/s over {loader['measured_images']} images"
        )
    return lines


def cmd_summarize(args) -> int:
    from normae.report.summarize import summary_table

    print(summary_table(args.runs))
    return 0


def cmd_tables(args) -> int:
    from normae.experiments.summary import plan_from_args
    from normae.report.tables import table_frame, write_table

    plan = plan_from_args(args)
    tables = {table.file: table for table in plan.tables.values()}
    names = args.tables or list(tables)
    unknown = sorted(set(names) - set(tables))
    if unknown:
        raise ConfigError(f"unknown table(s) {unknown}; known: {', '.join(tables)}")
    for name in names:
        for path in write_table(table_frame(tables[name], plan, args.root), tables[name], plan, args.out):
            print(f"[normae] wrote {path}", file=sys.stderr)
    return 0


def cmd_verdicts(args) -> int:
    from normae.report.html import verdicts_page

    missing = [path for path in args.tables if not Path(path).is_file()]
    if missing:
        raise MissingResultError(f"no table CSV {', '.join(missing)}: run `normae tables` (or `snakemake`) first")
    atomic_write_text(Path(args.out), verdicts_page(args.tables))
    print(f"[normae] wrote {args.out}", file=sys.stderr)
    return 0


def cmd_all_runs(args) -> int:
    from normae.experiments.summary import plan_from_args
    from normae.report.tables import all_runs_frame

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    all_runs_frame(plan_from_args(args), args.root).to_csv(args.out, index=False)
    print(f"[normae] wrote {args.out}", file=sys.stderr)
    return 0


def cmd_spec(args) -> int:
    from normae.experiments.summary import plan_from_args

    atomic_write_text(Path(args.out), plan_from_args(args).spec(args.run).to_json())
    return 0


def cmd_fetch_data(args) -> int:
    from normae.data.fetch import fetch_fashion_mnist

    folder = fetch_fashion_mnist(args.dest, allow_download=args.download)
    print(f"[normae] Fashion-MNIST is in {folder}")
    return 0


def cmd_nor_share(args) -> int:
    """`normae nor-share`: the NoR term's pull at initialisation, the paper's geometries or a scale's rows."""
    import csv

    from normae.analysis.nor_share import measure_share
    from normae.experiments.faithful import PAPER_SHARE_FILE, nor_rows, pull_checks, read_paper_shares
    from normae.experiments.summary import plan_from_args
    from normae.training.runtime import set_threads

    set_threads(args.threads)
    reference = Path(args.config_dir) / PAPER_SHARE_FILE

    def measure(geometry):
        return measure_share(geometry, args.images, args.probe_seeds, args.data_root)

    if args.paper:
        geometries = []
        for scale in args.scales:
            args.scale = scale
            geometries += [row.paper for row in nor_rows(plan_from_args(args))]
        geometries = list(dict.fromkeys(geometries))  # rows of several lambdas share a geometry
        records = []
        for geometry in geometries:
            records.append(measure(geometry).record())
            print(f"{geometry.label()}: {records[-1]['share_per_lambda']:.4g} per unit lambda", flush=True)
        out = Path(args.out or reference)
        with open(out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
        print(f"wrote {out}")
        return 0
    failed = 0
    for scale in args.scales:
        args.scale = scale
        for check in pull_checks(
            nor_rows(plan_from_args(args)), read_paper_shares(reference), lambda g: measure(g).share_per_lambda
        ):
            print(f"{scale}: {check.line()}", flush=True)
            failed += not check.faithful()
    return 1 if failed else 0


def cmd_cnp_stats(args) -> int:
    from normae.analysis.cnp_stats import cnp_similarity_stats

    stats = cnp_similarity_stats(
        args.source,
        args.images,
        args.img_size,
        args.patch_size,
        pixels=args.pixels,
        wrap=args.wrap,
        root=args.data_root,
        seed=args.seed,
    )
    out = Path(args.out)
    atomic_write_json(out, stats)
    print(
        f"[normae] {args.source}: CNP cosine mean {stats['mean']:.4f}, min {stats['min']:.4f}, max {stats['max']:.4f} "
        f"over {stats['patches'] - stats['undefined_patches']} patches -> {out}"
    )
    return 0


def cmd_pca(args) -> int:
    from normae.analysis.pca import run_pca

    summary = run_pca(args.run, args.images, args.out, dataset=args.dataset, data_root=args.data_root, seed=args.seed)
    print(
        f"[normae] {summary['label']}: CNP pairwise cosine {summary['mean_pairwise_cosine_cnp']:.4f}, "
        f"visible-to-CNP cosine {summary['mean_cosine_visible_to_its_cnp']:.4f} -> {args.out}"
    )
    return 0


def cmd_figure(args) -> int:
    from normae.report import figures, sweep_figures

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
    else:
        if len(args.inputs) != 1 or args.x is None:
            raise ConfigError("figure sweep takes one table CSV and --x")
        out = sweep_figures.sweep_figure(args.inputs[0], args.x, args.out)
    print(f"[normae] wrote {out}")
    return 0


def cmd_compare(args) -> int:
    from normae.report.compare import compare_plot, compare_text

    print(compare_text(args.run_a, args.run_b), end="")
    if args.plot:
        print(f"[normae] wrote {compare_plot(args.run_a, args.run_b, args.plot)}")
    return 0
