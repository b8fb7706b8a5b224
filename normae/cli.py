"""``normae`` command line: pretrain | finetune | linprobe | launch | bench | plan | summarize | fetch-data |
cnp-stats | pca | figure | compare."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from normae.atomic import atomic_write_text
from normae.errors import CheckpointError, CorruptDataError
from normae.cluster.launch import add_launch_options, launch, run_here
from normae.experiments.plan import add_plan_options, print_plan
from normae.spec import FinetuneSpec, LinprobeSpec, PretrainSpec

# normae.data.analysis_images.SOURCES, spelled out here because that module loads torch (a test checks they agree).
ANALYSIS_IMAGE_SOURCES = ("fashion_mnist", "generated", "sklearn_samples", "imagenet1k", "imagenet100")


def _field_type(spec_cls, field: dataclasses.Field):
    hint = typing.get_type_hints(spec_cls)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def add_spec_options(parser: argparse.ArgumentParser, spec_cls) -> None:
    """``--spec``, ``--out``, ``--resume`` and one ``--option`` per spec field, with its help and default."""
    parser.add_argument("--spec", help="JSON spec file (as written to spec.json); options given here override it")
    parser.add_argument("--out", help="run folder (default: results/runs/<run id>)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from the run folder's checkpoint.pt")
    group = parser.add_argument_group("run specification")
    for field in dataclasses.fields(spec_cls):
        flag = "--" + field.name.replace("_", "-")
        kind = _field_type(spec_cls, field)
        help_text = f"{field.metadata['help']} (default: {field.default})"
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=None, metavar=field.name.upper(), help=help_text)
    parser.set_defaults(spec_cls=spec_cls)


def spec_from_args(args: argparse.Namespace):
    """The spec file (if any) overlaid with every option given on the command line."""
    base = json.loads(Path(args.spec).read_text()) if args.spec else {}
    for field in dataclasses.fields(args.spec_cls):
        value = getattr(args, field.name)
        if value is not None:
            base[field.name] = value
    return args.spec_cls.from_dict(base)


def run_stage(args) -> int:
    """Run a stage from the command line (``--spec`` and options); a stopped or failed run says how to continue."""
    spec = spec_from_args(args)
    out = Path(args.out) if args.out else Path("results/runs") / spec.run_id()
    return run_here(spec, out, resume=args.resume)


def cmd_launch(args) -> int:
    return launch(args.stage, args.spec, args.out, launcher=args.launcher, resources=args.slurm)


def cmd_bench(args) -> int:
    from normae.analysis.bench import run_bench

    result = run_bench(
        model=args.model,
        img_size=args.img_size,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        lam=args.lam,
        cnp=args.cnp,
        amp=args.amp,
        device=args.device,
    )
    line = json.dumps(result)
    print(line)
    if args.out:
        atomic_write_text(Path(args.out), line + "\n")
    return 0


SUMMARY_COLUMNS = {
    "loss_rec": "masked-patch MSE on normalised pixels (last epoch mean)",
    "loss_nor": "NoR penalty before lambda (last epoch mean)",
    "top1": "top-1 % on the evaluation split (last epoch)",
    "best_top1": "best top-1 % over epochs",
    "step_s": "median seconds per optimiser step (last session)",
}


def describe_method(summary: dict) -> str:
    spec = summary["spec"]
    if summary["stage"] == "pretrain":
        if spec["method"] == "nor_mae":
            return f"nor_mae ({spec['cnp']} CNP, lambda {spec['lam']:g})"
        return spec["method"]
    return f"{summary['stage']} on {spec['dataset']} from {summary.get('init', spec['init'])}"


def cmd_summarize(args) -> int:
    rows = []
    for run in args.runs:
        path = Path(run) / "summary.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: {run} is not a finished run")
        summary = json.loads(path.read_text())
        values = {**summary["final"], "best_top1": summary.get("best_top1"), "step_s": summary.get("step_time_median_s")}
        row = {"run": Path(run).name, "what": describe_method(summary), "epochs": str(summary["epochs"])}
        for column in SUMMARY_COLUMNS:
            value = values.get(column)
            row[column] = "-" if value is None else f"{value:.4g}"
        rows.append(row)
    widths = {key: max(len(key), *(len(row[key]) for row in rows)) for key in rows[0]}
    print("  ".join(key.ljust(width) for key, width in widths.items()))
    for row in rows:
        print("  ".join(row[key].ljust(width) for key, width in widths.items()))
    print("; ".join(f"{name}: {meaning}" for name, meaning in SUMMARY_COLUMNS.items()))
    return 0


def cmd_tables(args) -> int:
    from normae.experiments.plan import plan_from_args
    from normae.report.tables import table_frame, write_table

    plan = plan_from_args(args)
    tables = {table.file: table for table in plan.tables.values()}
    names = args.tables or list(tables)
    unknown = sorted(set(names) - set(tables))
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; known: {', '.join(tables)}")
    for name in names:
        for path in write_table(table_frame(tables[name], plan, args.root), tables[name], plan, args.out):
            print(f"[normae] wrote {path}", file=sys.stderr)
    return 0


def cmd_all_runs(args) -> int:
    from normae.experiments.plan import plan_from_args
    from normae.report.tables import all_runs_frame

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    all_runs_frame(plan_from_args(args), args.root).to_csv(args.out, index=False)
    print(f"[normae] wrote {args.out}", file=sys.stderr)
    return 0


def cmd_spec(args) -> int:
    from normae.experiments.plan import plan_from_args

    atomic_write_text(Path(args.out), plan_from_args(args).spec(args.run).to_json())
    return 0


def cmd_fetch_data(args) -> int:
    from normae.data.fetch import fetch_fashion_mnist

    folder = fetch_fashion_mnist(args.dest, allow_download=args.download)
    print(f"[normae] Fashion-MNIST is in {folder}")
    return 0


def cmd_cnp_stats(args) -> int:
    from normae.analysis.cnp_stats import cnp_similarity_stats

    stats = cnp_similarity_stats(args.source, args.images, args.img_size, args.patch_size, pixels=args.pixels,
                                 wrap=args.wrap, root=args.data_root, seed=args.seed)
    out = Path(args.out)
    atomic_write_text(out, json.dumps(stats, indent=2) + "\n")
    print(f"[normae] {args.source}: CNP cosine mean {stats['mean']:.4f}, min {stats['min']:.4f}, max {stats['max']:.4f} "
          f"over {stats['patches'] - stats['undefined_patches']} patches -> {out}")
    return 0


def cmd_pca(args) -> int:
    from normae.analysis.pca import run_pca

    summary = run_pca(args.run, args.images, args.out, dataset=args.dataset, data_root=args.data_root, seed=args.seed)
    print(f"[normae] {summary['label']}: CNP pairwise cosine {summary['mean_pairwise_cosine_cnp']:.4f}, "
          f"visible-to-CNP cosine {summary['mean_cosine_visible_to_its_cnp']:.4f} -> {args.out}")
    return 0


def cmd_figure(args) -> int:
    from normae.report import figures

    if args.kind == "cnp-similarity":
        out = figures.cnp_similarity_figure(args.inputs, args.out)
    elif args.kind == "pca":
        out = figures.pca_figure(args.inputs, args.out, labels=args.labels)
    elif args.kind == "variants":
        out = figures.variants_figure(args.inputs, args.finetune or [], args.out)
    else:
        if len(args.inputs) != 1 or args.x is None:
            raise ValueError("figure sweep takes one table CSV and --x")
        out = figures.sweep_figure(args.inputs[0], args.x, args.out)
    print(f"[normae] wrote {out}")
    return 0


def cmd_compare(args) -> int:
    from normae.report.compare import compare_plot, compare_text

    print(compare_text(args.run_a, args.run_b), end="")
    if args.plot:
        print(f"[normae] wrote {compare_plot(args.run_a, args.run_b, args.plot)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normae", description="Reproduce NoR-MAE and compare it with MAE.")
    commands = parser.add_subparsers(dest="command", required=True)

    pretrain = commands.add_parser(
        "pretrain",
        help="pre-train MAE or NoR-MAE",
        description="Pre-train MAE or NoR-MAE. Writes spec.json, checkpoint.pt, metrics.jsonl and, last, summary.json "
        "into the output folder. Options override the --spec file; unset options take the defaults shown.",
    )
    add_spec_options(pretrain, PretrainSpec)
    pretrain.set_defaults(func=run_stage)

    for spec_cls, summary in ((FinetuneSpec, "fine-tune an encoder end to end (MAE protocol)"),
                              (LinprobeSpec, "linear-probe a frozen encoder (MAE protocol)")):
        transfer = commands.add_parser(
            spec_cls.stage,
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]}, evaluating top-1 / top-5 on the set's official evaluation "
            "split after every epoch. Writes spec.json, checkpoint.pt, metrics.jsonl and, last, summary.json. "
            "Defaults are the paper's protocol.",
        )
        add_spec_options(transfer, spec_cls)
        transfer.set_defaults(func=run_stage)

    bench = commands.add_parser(
        "bench",
        help="time MAE vs NoR-MAE training steps",
        description="Times MAE and NoR-MAE training steps interleaved in one process on random images and prints one "
        "JSON line: median step time, images/s and peak memory of each, and the NoR-MAE / MAE ratios.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    bench.add_argument("--model", default="vit_tiny", help="model size")
    bench.add_argument("--img-size", type=int, default=224, help="image size in pixels")
    bench.add_argument("--patch-size", type=int, default=16, help="patch size in pixels")
    bench.add_argument("--batch-size", type=int, default=16, help="images per step")
    bench.add_argument("--steps", type=int, default=10, help="measured steps per method")
    bench.add_argument("--warmup", type=int, default=2, help="unmeasured steps per method first")
    bench.add_argument("--lam", type=float, default=5e-5, help="NoR lambda")
    bench.add_argument("--cnp", default="paper", choices=("paper", "authors_code", "random"), help="CNP mode")
    bench.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "none"), help="mixed precision (auto: bf16 on CUDA)")
    bench.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    bench.add_argument("--out", default=None, help="also write the JSON line to this file (atomically)")
    bench.set_defaults(func=cmd_bench)

    launch_parser = commands.add_parser(
        "launch",
        help="run one spec file in its run folder through a launcher (what the workflow calls)",
        description="Run a spec file's stage into --out, resuming from its checkpoint if one is there. "
        "A folder that already holds summary.json is left as it is.",
    )
    add_launch_options(launch_parser)
    launch_parser.set_defaults(func=cmd_launch)

    plan = commands.add_parser("plan", help="expand the paper's tables into the runs a scale needs")
    add_plan_options(plan)
    plan.set_defaults(func=print_plan)

    summarize = commands.add_parser("summarize", help="print the final metrics of finished runs side by side")
    summarize.add_argument("runs", nargs="+", help="run folders holding summary.json")
    summarize.set_defaults(func=cmd_summarize)

    spec = commands.add_parser("spec", help="write the spec file of one planned run (what the workflow launches)")
    spec.add_argument("run", help="run id, as `normae plan` and the workflow name it")
    add_plan_options(spec)
    spec.add_argument("--out", required=True, help="JSON file to write")
    spec.set_defaults(func=cmd_spec)

    tables = commands.add_parser("tables", help="write the paper's tables with our numbers from finished runs",
                                 description="Write results/tables/<name>.{csv,md,tex}: per row the paper's value, ours "
                                 "(mean ± spread over seeds), the scale, ours minus the paper's and the NoR-MAE minus MAE gain.")
    tables.add_argument("tables", nargs="*", help="table file names (table1 ... ablation; default: all)")
    add_plan_options(tables)
    tables.add_argument("--root", default=".", help="folder holding results/runs and results/analysis")
    tables.add_argument("--out", default="results/tables", help="folder to write the tables into")
    tables.set_defaults(func=cmd_tables)

    all_runs = commands.add_parser("all-runs", help="one tidy CSV: a row per planned run with its spec and metrics")
    add_plan_options(all_runs)
    all_runs.add_argument("--root", default=".", help="folder holding results/runs")
    all_runs.add_argument("--out", default="results/all_runs.csv", help="CSV to write")
    all_runs.set_defaults(func=cmd_all_runs)

    fetch = commands.add_parser("fetch-data", help="fetch Fashion-MNIST into the data cache",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    fetch.add_argument("dataset", choices=("fashion-mnist",))
    fetch.add_argument("--dest", default="data/fashion-mnist", help="folder to fill")
    fetch.add_argument("--download", action="store_true", help="allow torchvision to download it when apt cannot provide it")
    fetch.set_defaults(func=cmd_fetch_data)
    defaults = argparse.ArgumentDefaultsHelpFormatter
    cnp_stats = commands.add_parser(
        "cnp-stats", help="Figure 3: cosine similarity of image patches with their closest neighbour patch",
        description="Cosine similarity of every image patch (pixels) with its closest neighbour in its 3x3 window, "
        "over a seeded choice of images; writes a JSON with mean, min, max, quantiles and a histogram.",
        formatter_class=defaults)
    cnp_stats.add_argument("--source", required=True,
                           choices=ANALYSIS_IMAGE_SOURCES,
                           help="images: sklearn_samples = crops of scikit-learn's two sample photographs")
    cnp_stats.add_argument("--images", type=int, default=4096, help="number of images (the paper: 4096)")
    cnp_stats.add_argument("--img-size", type=int, required=True, help="image (crop) size in pixels")
    cnp_stats.add_argument("--patch-size", type=int, required=True, help="patch size in pixels")
    cnp_stats.add_argument("--pixels", choices=("raw", "normalized"), default="raw",
                           help="raw [0, 1] intensities, or normalised with the data set's mean and std")
    cnp_stats.add_argument("--wrap", action=argparse.BooleanOptionalAction, default=True,
                           help="3x3 window wraps around the image border (torus), as in training")
    cnp_stats.add_argument("--data-root", help="data folder (needed for the ImageNets)")
    cnp_stats.add_argument("--seed", type=int, default=0, help="seed of the choice of images")
    cnp_stats.add_argument("--out", required=True, help="JSON file to write")
    cnp_stats.set_defaults(func=cmd_cnp_stats)

    pca = commands.add_parser(
        "pca", help="Figures 7-8: PCA of visible vs closest-neighbour features of a pre-trained encoder",
        description="Encodes masked images with a pre-training run's encoder, and separately their visible patches' "
        "closest neighbours; projects both (L2-normalised) jointly to 2-D. Writes OUT (.npz) and OUT with .json.",
        formatter_class=defaults)
    pca.add_argument("--run", required=True, help="pre-training run folder (spec.json, checkpoint.pt)")
    pca.add_argument("--images", type=int, default=16, help="number of images from the evaluation split")
    pca.add_argument("--dataset", help="image source (default: the run's pre-training set)",
                     choices=ANALYSIS_IMAGE_SOURCES)
    pca.add_argument("--data-root", help="data folder (default: the run's)")
    pca.add_argument("--seed", type=int, default=0, help="seed of the images and the mask")
    pca.add_argument("--out", required=True, help=".npz file to write")
    pca.set_defaults(func=cmd_pca)

    figure = commands.add_parser(
        "figure", help="draw one of the paper's figures as PNG",
        description="cnp-similarity: cnp-stats JSONs. pca: pca .npz files (MAE and NoR-MAE side by side). "
        "variants: pre-training run folders (and --finetune runs). sweep: one table CSV with --x.")
    figure.add_argument("kind", choices=("cnp-similarity", "pca", "variants", "sweep"))
    figure.add_argument("inputs", nargs="+", help="the files or run folders the figure is drawn from")
    figure.add_argument("--out", required=True, help="PNG file to write")
    figure.add_argument("--labels", nargs="+", help="pca: one panel title per input")
    figure.add_argument("--finetune", nargs="+", help="variants: fine-tuning run folders for the top-1 panel")
    figure.add_argument("--x", choices=("lam", "mask_ratio", "patch_size", "pretrain_epochs"), help="sweep: the swept setting")
    figure.set_defaults(func=cmd_figure)

    compare = commands.add_parser("compare", help="two runs side by side: spec diff, final metrics, curves")
    compare.add_argument("run_a", help="run folder A")
    compare.add_argument("run_b", help="run folder B")
    compare.add_argument("--plot", help="also draw the curves into this PNG")
    compare.set_defaults(func=cmd_compare)
    return parser


# Commands that train in this process: the others (plan, tables, figure, a launcher that submits a job
# and waits for it on a login node) do not load torch.
TRAINING_COMMANDS = ("pretrain", "finetune", "linprobe", "launch", "bench")


def trains_here(args: argparse.Namespace) -> bool:
    return args.command in TRAINING_COMMANDS and getattr(args, "launcher", "inprocess") == "inprocess"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if trains_here(args):
        from normae.training.loop import keep_freed_memory

        keep_freed_memory()
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, CorruptDataError, CheckpointError) as error:
        print(f"normae {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
