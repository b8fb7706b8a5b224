"""The measurements behind the paper's figures and the NoR term's faithfulness: ``cnp-stats`` (Figure 3),
``nor-share`` (the NoR term's share of the gradient at initialisation) and ``pca`` (Figures 7-8). The
measuring is ``normae.analysis`` (torch), imported when a handler runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from normae.atomic import atomic_write_json
from normae.cli.plan import plan_from_args
from normae.data.registry import ANALYSIS_SOURCES
from normae.experiments.config import CONFIG_DIR


def add_cnp_stats(command) -> None:
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


def add_nor_share(command) -> None:
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


def cmd_nor_share(args) -> int:
    """`normae nor-share`: the NoR term's pull at initialisation, the paper's geometries or a scale's rows."""
    import csv

    from normae.analysis.nor_share import measure_share
    from normae.experiments.faithful import PAPER_SHARE_FILE, nor_rows, pull_checks, read_paper_shares
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


def add_pca(command) -> None:
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


def cmd_pca(args) -> int:
    from normae.analysis.pca import run_pca

    summary = run_pca(args.run, args.images, args.out, dataset=args.dataset, data_root=args.data_root, seed=args.seed)
    print(
        f"[normae] {summary['label']}: CNP pairwise cosine {summary['mean_pairwise_cosine_cnp']:.4f}, "
        f"visible-to-CNP cosine {summary['mean_cosine_visible_to_its_cnp']:.4f} -> {args.out}"
    )
    return 0
