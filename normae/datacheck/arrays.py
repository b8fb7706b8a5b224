"""The sets stored as arrays, not image files, read without torch: CIFAR's pickles, Fashion-MNIST's IDX files.

Inspectors for normae.datacheck.check (see normae.datacheck.found). Torch-free: standard library and numpy.
"""

from __future__ import annotations

import gzip
import math
import random
import struct
import zlib
from pathlib import Path

import numpy as np

from normae.data.layouts import ON_DISK
from normae.data.pickles import load_data_pickle
from normae.data.registry import DATASETS, FASHION_MNIST_FILES, IDX_DTYPES
from normae.datacheck.found import Copy, Found, md5_problems, need


def _unpickle(path: Path) -> dict:
    data = load_data_pickle(path)  # never pickle.load: a crafted batch would run its code here
    if not isinstance(data, dict):
        raise ValueError(f"holds a {type(data).__name__}, not a dict")
    return data


_CIFAR_CLASS_KEY = {"cifar10": "label_names", "cifar100": "fine_label_names"}


def inspect_cifar(copy: Copy, samples: int, seed: int) -> Found:
    """Counts by unpickling the batches; decoding: each sampled row reshapes to a 3x32x32 uint8 image."""
    found = Found()
    layout = ON_DISK[copy.name]
    train_files, test_files, meta_file = layout.train, layout.eval, str(layout.labels)
    base = copy.folder / layout.folder
    if not need(copy, found, base, layout.needed()):
        return found
    found.problems += md5_problems(copy)
    found.split_sources = (f"{base}/{{{','.join(train_files)}}}", str(base / test_files[0]))
    batches: list[tuple[Path, list]] = []
    counts = []
    for names in (train_files, test_files):
        count = 0
        for name in names:
            try:
                batch = _unpickle(base / name)
                labels = batch["labels"] if "labels" in batch else batch["fine_labels"]
                rows = list(batch["data"])
            except Exception as error:  # unpickling broken bytes raises almost any exception type
                found.problems.append(f"{copy.name}: cannot read batch {base / name} ({error!r}) (fix: {copy.fix})")
                continue
            if len(rows) != len(labels):
                found.problems.append(
                    f"{copy.name}: {base / name} holds {len(rows)} images but {len(labels)} labels (fix: {copy.fix})"
                )
            count += len(labels)
            batches.append((base / name, rows))
        counts.append(count)
    found.train, found.eval = counts
    try:
        found.classes = len(_unpickle(base / meta_file)[_CIFAR_CLASS_KEY[copy.name]])
        found.class_source = f"the class names of {base / meta_file}"
    except Exception as error:
        found.problems.append(f"{copy.name}: cannot read {base / meta_file} ({error!r}) (fix: {copy.fix})")
    every_row = [(path, index) for path, rows in batches for index in range(len(rows))]
    drawn = random.Random(seed).sample(every_row, min(samples, len(every_row)))
    rows_of = dict(batches)
    bad = []
    for path, index in drawn:
        row = np.asarray(rows_of[path][index])
        if row.dtype != np.uint8 or row.size != 3 * 32 * 32:
            bad.append(f"row {index} of {path} ({row.dtype}, {row.size} values)")
    if bad:
        found.problems.append(
            f"{copy.name}: {len(bad)} sampled rows are no 3x32x32 uint8 image: {', '.join(bad[:3])} (fix: {copy.fix})"
        )
    found.decoded = f"{len(drawn) - len(bad)} of {len(drawn)} sampled rows are 3x32x32 uint8"
    return found


def _read_idx_header(path: Path) -> tuple[tuple[int, ...], np.ndarray | None]:
    """An IDX file's shape, checked against its length, and a labels file's values (as sources.read_idx reads them).

    A .gz file is read to its end, which also checks its CRC; only 1-d files (labels) are kept in memory.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        magic = f.read(4)
        if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in IDX_DTYPES:
            raise ValueError(f"not an IDX file (magic bytes {magic.hex()!r})")
        dtype, ndim = np.dtype(IDX_DTYPES[magic[2]]), magic[3]
        header = f.read(4 * ndim)
        if len(header) < 4 * ndim:
            raise ValueError("truncated IDX header")
        shape = struct.unpack(f">{ndim}I", header)
        blocks, length = [], 0
        for block in iter(lambda: f.read(1 << 20), b""):
            length += len(block)
            if ndim == 1:
                blocks.append(block)
    expected = math.prod(shape) * dtype.itemsize
    if length != expected:
        raise ValueError(f"shape {shape} needs {expected:,} data bytes, found {length:,}")
    return shape, np.frombuffer(b"".join(blocks), dtype) if ndim == 1 else None


def inspect_fashion_mnist(copy: Copy, samples: int, seed: int) -> Found:
    """The four IDX files, each plain or .gz (plain first, as the loader looks); counts from their headers.

    "Decoding" is each file's header agreeing with its length, and the images (N x 28 x 28) with the labels (N).
    """
    found = Found()
    paths = {}
    for name in FASHION_MNIST_FILES:
        paths[name] = next((p for p in (copy.folder / name, copy.folder / f"{name}.gz") if p.is_file()), None)
    lacking = [f"{name}[.gz]" for name, path in paths.items() if path is None]
    if lacking:
        found.problems.append(copy.lacks(copy.folder, lacking))
        return found
    shapes, labels = {}, []
    for name, path in paths.items():
        assert path is not None
        try:
            shapes[name], values = _read_idx_header(path)
        except (OSError, EOFError, ValueError, zlib.error) as error:
            found.problems.append(f"{copy.name}: {path} is no whole IDX file ({error}) (fix: {copy.fix})")
            continue
        if values is not None:
            labels.append(values)
    side = DATASETS[copy.name].native_size
    counts: list[int | None] = []
    for prefix in ("train", "t10k"):
        images, targets = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        if images not in shapes or targets not in shapes:
            counts.append(None)
            continue
        if shapes[images][1:] != (side, side) or shapes[targets] != shapes[images][:1]:
            found.problems.append(
                f"{copy.name}: {paths[images]} holds images of shape {shapes[images]} and {paths[targets]} "
                f"labels of shape {shapes[targets]}; the loader needs N x {side} x {side} images and N labels "
                f"(fix: {copy.fix})"
            )
        counts.append(shapes[images][0])
    found.train, found.eval = counts
    found.split_sources = (f"{copy.folder}/train-*-ubyte", f"{copy.folder}/t10k-*-ubyte")
    if labels:
        found.classes = len(np.unique(np.concatenate(labels)))
        found.class_source = f"the labels of {copy.folder}/*-labels-idx1-ubyte"
    found.decoded = f"{len(shapes)} of 4 IDX files whole (headers and lengths agree)"
    return found
