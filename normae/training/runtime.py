"""The process a run trains in: processes and devices, mixed precision, threads, seeds, memory, facts.

One place for each: every stage, the benchmark and the training loop resolve ``--amp`` with
``resolve_amp`` and turn it into a dtype with ``amp_dtype`` / ``autocast``.
"""

from __future__ import annotations

import ctypes
import os
import platform
import random
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from normae.errors import ConfigError

# What ``--amp`` may say once resolved, and the autocast dtype of each (None: full precision).
AMP_DTYPES: dict[str, torch.dtype | None] = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


# ---- processes and devices ---------------------------------------------------------------------
def setup_distributed() -> tuple[int, int, torch.device]:
    """Join the process group that torchrun / submitit describe in the environment, if any.

    Returns (rank, world size, this process's device).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), device


def wrap_ddp(model: torch.nn.Module, device: torch.device, world_size: int) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when there is more than one process, else as it is."""
    if world_size == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


# ---- mixed precision ---------------------------------------------------------------------------
def resolve_amp(amp: str, device: torch.device | str) -> str:
    """``auto`` -> ``bf16`` on a CUDA device that supports it, else ``none``; other names as they are."""
    if amp == "auto":
        device = torch.device(device)
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "none"
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be auto, {', '.join(AMP_DTYPES)}; got {amp!r}")
    return amp


def amp_dtype(amp: str) -> torch.dtype | None:
    """The autocast dtype of a resolved ``amp`` name (None for ``none``)."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"resolve {amp!r} first (resolve_amp): amp must be one of {', '.join(AMP_DTYPES)}")
    return AMP_DTYPES[amp]


def autocast(amp: str, device: torch.device | str):
    """The autocast context of a resolved ``amp`` name on ``device``; a no-op for ``none``."""
    dtype = amp_dtype(amp)
    if dtype is None:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


# ---- threads, seeds, memory --------------------------------------------------------------------
def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n``; returns the number used.

    Without ``n``: SLURM_CPUS_PER_TASK when SLURM set it, else OMP_NUM_THREADS when the user (or
    Snakemake, which exports it as the job's ``threads``) set it, else the CPUs this process may run
    on (its affinity mask, which respects ``taskset`` and cgroup cpusets, unlike ``os.cpu_count()``).
    """
    if n is None:
        given = [os.environ.get(name, "").strip() for name in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS")]
        if any(given):
            n = int(next(value for value in given if value))
        elif hasattr(os, "sched_getaffinity"):
            n = len(os.sched_getaffinity(0))
        else:  # macOS, Windows
            n = os.cpu_count() or 1
    if n < 1:
        raise ConfigError(f"threads must be at least 1, got {n} (--threads, SLURM_CPUS_PER_TASK or OMP_NUM_THREADS)")
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> None:
    """Seed torch, NumPy and Python: model initialisation and batch-level draws (timm's Mixup uses NumPy)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@contextmanager
def seeded_randomness(seed: int):
    """Run a block with torch, NumPy and Python generators seeded, then put them back as they were."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the system.

    By default much of what a CPU training step frees goes back to the kernel, and the next
    step faults it in again; on virtual machines that costs a fifth of a step (measured for
    vit_micro at batch 64: 0.72 s -> 0.58 s per step, page faults 355k -> 66k over 10 steps).
    Returns False where there is no glibc (macOS, musl): nothing changes there.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    top_pad, mmap_threshold = -2, -3  # M_TOP_PAD, M_MMAP_THRESHOLD in <malloc.h>
    keep_at_heap_top = 512 * 2**20
    largest_heap_block = 32 * 2**20  # glibc refuses an mmap threshold above half its heap size (64 MiB)
    return bool(libc.mallopt(top_pad, keep_at_heap_top)) and bool(libc.mallopt(mmap_threshold, largest_heap_block))


def environment_facts(device: torch.device) -> dict:
    """What a summary records about where it ran: the device's name, the torch version and its threads."""
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
