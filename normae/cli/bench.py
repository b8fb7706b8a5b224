"""``normae bench`` and ``normae bench-data``.

The bench's measurement options are ``BenchSpec``'s fields (generated as the training commands'
options are, so a flag left out takes the spec's default: the same measurement as the workflow's
bench run); the loader measurement's own knobs, the device and ``--out`` belong to the command.
``bench-data`` writes the generated JPEG folder that the loader measurement reads where there is no
ImageNet (``normae.datagen.imagenet_like``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from normae.atomic import atomic_write_json
from normae.cli.options import add_spec_fields, add_threads_option, spec_values
from normae.errors import ConfigError
from normae.spec import BenchSpec

# BenchSpec fields that are not options of the command: the workflow's bench run reads its images
# through a data set's loader; the command measures on synthetic images, and times a loader on --data.
NOT_OPTIONS = ("dataset", "data_root", "num_workers", "loader")


def add_bench(command) -> None:
    bench = command(
        "bench",
        "time MAE vs NoR-MAE (and SupMAE, DMAE) training steps",
        "Times the methods' training steps interleaved in one process on random images and prints one JSON "
        "line: median step time, images/s, FLOPs, MFU and peak memory of each, the NoR-MAE / MAE and / DMAE "
        "ratios; with --loader and --data also the loader's images/s alone.",
    )
    names = [field.name for field in dataclasses.fields(BenchSpec) if field.name not in NOT_OPTIONS]
    add_spec_fields(bench.add_argument_group("measurement (normae.spec.BenchSpec)"), BenchSpec, names)
    bench.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    loader = bench.add_argument_group("loader measurement (images/s of the loader alone, no model)")
    add_spec_fields(loader, BenchSpec, ["loader"])
    loader.add_argument(
        "--data", help="image folder: an ImageNet root (its train/) or a folder of class folders (normae bench-data)"
    )
    loader.add_argument(
        "--loader-images",
        type=int,
        default=512,
        help="images timed after the warm-up (torchvision: rounded up to whole waves of one batch per worker)",
    )
    loader.add_argument(
        "--loader-warmup", type=int, help="untimed batches first (default: torchvision one per worker, DALI 3)"
    )
    loader.add_argument(
        "--loader-workers", type=int, help="DataLoader processes or DALI threads (default: the CPUs, at most 16)"
    )
    loader.add_argument("--loader-only", action="store_true", help="time the loader only, not the models")
    bench.add_argument("--out", help="also write the JSON result to this file (atomically)")
    add_threads_option(bench)
    bench.set_defaults(func=cmd_bench)


def bench_spec(args: argparse.Namespace) -> BenchSpec:
    """The options given over BenchSpec's defaults; --data alone times the torchvision loader."""
    if args.loader and not args.data:
        raise ConfigError(f"--loader {args.loader} needs --data: an image folder (normae bench-data --out FOLDER)")
    if args.loader_only and not args.data:
        raise ConfigError("--loader-only needs --data (and --loader): there is nothing else to time")
    loader = (args.loader or "torchvision") if args.data else None
    return BenchSpec.from_dict({**spec_values(args, BenchSpec), "loader": loader, "data_root": args.data})


def cmd_bench(args: argparse.Namespace) -> int:
    """`normae bench`: the interleaved model measurement and, with --loader or --data, the loader alone;
    one JSON line on stdout, a readable summary on stderr."""
    spec = bench_spec(args)
    from normae.stages.bench import measure

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


def add_bench_data(command) -> None:
    bench_data = command(
        "bench-data",
        "write a generated ImageNet-like JPEG folder for timing data loaders",
        "Writes OUT/train/<class>/<class>_<n>.JPEG: ImageNet's common picture sizes (mostly 500 x 375), JPEG "
        "quality 90, smooth colour fields with pixel noise so that decoding costs what a photograph's does; "
        "and OUT/bench_images.json. The same request leaves a finished folder as it is.",
    )
    bench_data.add_argument("--out", required=True, help="folder to write (an ImageNet-style root)")
    bench_data.add_argument("--images", type=int, default=2048, help="number of pictures")
    bench_data.add_argument("--classes", type=int, default=10, help="class folders (pictures go round-robin)")
    bench_data.add_argument("--seed", type=int, default=0, help="seed of the pictures")
    bench_data.add_argument("--workers", type=int, help="encoding processes (default: the CPUs, at most 16)")
    bench_data.set_defaults(func=cmd_bench_data)


def cmd_bench_data(args: argparse.Namespace) -> int:
    """Write the generated folder; print its manifest as one JSON line."""
    from normae.datagen.imagenet_like import write_imagenet_like

    manifest = write_imagenet_like(args.out, args.images, classes=args.classes, seed=args.seed, workers=args.workers)
    print(json.dumps(manifest))
    return 0
