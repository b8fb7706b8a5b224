"""The options of ``normae bench`` and the ``normae bench-data`` command (torch-free).

``add_bench_arguments`` gives the bench's parser its options: the model measurement (sizes, steps,
precision, ``--compile``) and the loader measurement (``--loader``, ``--data``). ``add_bench_data_command``
registers ``bench-data``, which writes the generated JPEG folder that the loader measurement reads where
there is no ImageNet (``normae.data.bench_images``). Kept apart from ``normae.cli`` so that the CLI's
module stays within its size; both are imported on login nodes, so neither imports torch.
"""

from __future__ import annotations

import argparse
import json

from normae.spec import AMP_MODES, CNP_MODES, LOADERS


def add_bench_arguments(bench: argparse.ArgumentParser) -> None:
    """The bench's options (``normae.commands.cmd_bench`` reads them)."""
    bench.add_argument("--model", default="vit_tiny", help="model size")
    bench.add_argument("--img-size", type=int, default=224, help="image size in pixels")
    bench.add_argument("--patch-size", type=int, default=16, help="patch size in pixels")
    bench.add_argument("--batch-size", type=int, default=16, help="images per step (and per loader batch)")
    bench.add_argument("--steps", type=int, default=10, help="measured steps per method")
    bench.add_argument("--warmup", type=int, default=2, help="unmeasured steps per method first")
    bench.add_argument("--lam", type=float, default=5e-5, help="NoR lambda")
    bench.add_argument("--cnp", default="paper", choices=CNP_MODES, help="CNP mode")
    bench.add_argument("--amp", default="auto", choices=AMP_MODES, help="mixed precision (auto: bf16 on CUDA)")
    bench.add_argument(
        "--methods", default="mae,nor_mae", help="comma-separated, interleaved (e.g. mae,nor_mae,sup_mae,dmae)"
    )
    bench.add_argument("--teacher-model", default="vit_base", help="DMAE's teacher size (random weights: cost only)")
    bench.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile each method's model (one untimed step compiles it); the JSON says compile: true",
    )
    bench.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    loader = bench.add_argument_group("loader measurement (images/s of the loader alone, no model)")
    loader.add_argument(
        "--loader",
        choices=LOADERS,
        help="time this pre-training loader on --data: torchvision (PIL, DataLoader workers; the default "
        "with --data) or dali (nvJPEG on the GPU; pip install nvidia-dali-cuda120)",
    )
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


def cmd_bench_data(args: argparse.Namespace) -> int:
    """Write the generated folder; print its manifest as one JSON line."""
    from normae.data.bench_images import write_bench_images

    manifest = write_bench_images(args.out, args.images, classes=args.classes, seed=args.seed, workers=args.workers)
    print(json.dumps(manifest))
    return 0


def add_bench_data_command(command) -> None:
    """Register bench-data with the CLI's ``command(name, summary, description)``."""
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
