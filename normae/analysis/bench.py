"""MAE vs NoR-MAE training-step time and peak memory, measured interleaved in one process.

Both models start from the same weights and see the same images and masks. Steps alternate
(MAE, NoR-MAE, then NoR-MAE, MAE, ...) so that drifts in machine speed hit both alike; the
result is one JSON line with the ratios NoR-MAE / MAE (time: the median of the per-iteration
ratios; memory: the ratio of the peaks).

Memory: on CUDA the allocator's peak (``max_memory_allocated``, weights and optimiser state
included) during a step. On CPU there is no allocator counter, so after the timed steps we run
two more steps of each method and report how far the process's peak resident memory (VmHWM,
reset through /proc/self/clear_refs) rose above its resident memory at the start of the step,
with freed heap memory returned first: the memory a step needs on top of weights and
optimiser state.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import time
from pathlib import Path

import torch

from normae.core.model import build_mae, build_mae_from_spec
from normae.spec import DISTILLED_METHODS, SUPERVISED_METHODS, PretrainSpec
from normae.training.runtime import autocast, resolve_amp


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class CpuPeakMemory:
    """Peak resident-memory growth of the process during a block (Linux only)."""

    def __init__(self):
        try:
            self.libc = ctypes.CDLL("libc.so.6")
            Path("/proc/self/clear_refs").write_text("5")
            self.available = True
        except OSError:
            self.available = False

    def start(self):
        gc.collect()
        self.libc.malloc_trim(0)
        self.base = _rss_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")

    def peak_mib(self) -> float:
        return (_rss_kib("VmHWM") - self.base) / 1024


def _train_step(model, optimizer, images, noise, amp, labels=None):
    optimizer.zero_grad(set_to_none=True)
    with autocast(amp, images.device):
        loss = model(images, noise, labels=labels).loss
    loss.backward()
    optimizer.step()


BENCH_CLASSES = 1000  # SupMAE's head is sized for ImageNet-1K's classes; the labels are random


def _bench_model(method, model, img_size, patch_size, lam, cnp, amp, seed, teacher_model):
    """The method's model from ``seed``; SupMAE with its head, DMAE with a randomly initialised frozen teacher
    of ``teacher_model`` (cost does not depend on the teacher's weights; its forward is part of the step)."""
    options = {"teacher": "random-init", "teacher_model": teacher_model} if method in DISTILLED_METHODS else {}
    spec = PretrainSpec(
        model=model,
        img_size=img_size,
        patch_size=patch_size,
        method=method,
        lam=lam,
        cnp=cnp,
        amp=amp,
        seed=seed,
        **options,
    )
    torch.manual_seed(seed)
    teacher = build_mae(teacher_model, img_size=img_size, patch_size=patch_size) if options else None
    classes = BENCH_CLASSES if method in SUPERVISED_METHODS else None
    return build_mae_from_spec(spec, img_size, num_classes=classes, teacher=teacher)


def run_bench(
    model: str = "vit_tiny",
    img_size: int = 224,
    patch_size: int = 16,
    batch_size: int = 16,
    steps: int = 10,
    warmup: int = 2,
    lam: float = 5e-5,
    cnp: str = "paper",
    amp: str = "auto",
    device: str | None = None,
    seed: int = 0,
    images: torch.Tensor | None = None,
    methods: tuple[str, ...] = ("mae", "nor_mae"),
    teacher_model: str = "vit_base",
) -> dict:
    """The interleaved measurement; ``images`` (batch_size, 3, img_size, img_size): what the steps see
    (default: synthetic, standard normal)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = resolve_amp(amp, device)
    built = {}
    for method in methods:
        net = _bench_model(method, model, img_size, patch_size, lam, cnp, amp, seed, teacher_model).to(device)
        built[method] = (net, torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.9, 0.95)))
    methods = built  # type: ignore[assignment]  # name -> (model, optimiser) from here on
    labels = torch.randint(0, BENCH_CLASSES, (batch_size,), generator=torch.Generator().manual_seed(seed))
    labels = labels.to(device)
    generator = torch.Generator().manual_seed(seed)
    synthetic = images is None
    if images is None:
        images = torch.randn(batch_size, 3, img_size, img_size, generator=generator)
    images = images.to(device)
    num_patches = methods["mae"][0].patch_embed.num_patches
    noises = [torch.rand(batch_size, num_patches, generator=generator).to(device) for _ in range(warmup + steps)]
    times = {name: [] for name in methods}
    peaks = {name: [] for name in methods}
    for i in range(warmup + steps):
        order = list(methods) if i % 2 == 0 else list(reversed(methods))
        for name in order:
            net, optimizer = methods[name]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            _train_step(net, optimizer, images, noises[i], amp, labels)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
                if device.type == "cuda":
                    peaks[name].append(torch.cuda.max_memory_allocated(device) / 2**20)
    cpu_memory = CpuPeakMemory() if device.type == "cpu" else None
    if cpu_memory is not None and cpu_memory.available:
        # Measured after the timing: returning freed memory to the system before every step
        # makes the next step page it in again, which would distort the times.
        for name, (net, optimizer) in methods.items():
            for noise in noises[:2]:
                cpu_memory.start()
                _train_step(net, optimizer, images, noise, amp, labels)
                peaks[name].append(cpu_memory.peak_mib())
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": model,
        "img_size": img_size,
        "patch_size": patch_size,
        "batch_size": batch_size,
        "steps": steps,
        "amp": amp,
        "cnp": cnp,
        "memory_kind": "cuda_max_allocated_mib" if device.type == "cuda" else "cpu_peak_rss_growth_mib",
        "methods": list(methods),
        "images": "synthetic" if synthetic else "given",
    }
    for name in methods:
        median = statistics.median(times[name])
        result[name] = {
            "median_step_s": median,
            "images_per_s": batch_size / median,
            "peak_memory_mib": max(peaks[name]) if peaks[name] else None,
            "step_times_s": times[name],
        }
    # Median of per-iteration ratios: each pair of steps ran back to back, so slow spells of a
    # shared machine cancel out of the ratio.
    for other in ("mae", "dmae"):  # the paper's two claims: vs MAE (<= 2 % time) and vs DMAE ("50 % less cost")
        if other in times and "nor_mae" in times:
            result[f"nor_over_{other}_time"] = statistics.median(n / m for n, m in zip(times["nor_mae"], times[other]))
            base, nor = result[other]["peak_memory_mib"], result["nor_mae"]["peak_memory_mib"]
            result[f"nor_over_{other}_memory"] = nor / base if base and nor else None
    if "dmae" in methods:
        result["teacher_model"] = teacher_model
    return result
