"""MAE vs NoR-MAE training-step time and peak memory, measured interleaved in one process.

Both models start from the same weights and see the same images and masks. Steps alternate
(MAE, NoR-MAE, then NoR-MAE, MAE, ...) so that drifts in machine speed hit both alike; the
result is one JSON line with the ratios NoR-MAE / MAE (time: the median of the per-iteration
ratios; memory: the ratio of the peaks).

Each method's step is the stages' step: the model under ``autocast`` at the resolved precision (bf16 on
CUDA), timm's fused attention, the stages' AdamW (fused on CUDA), and with ``compile`` the model through
``torch.compile`` (its compilation happens in one extra untimed step). FLOPs per step are counted once per
method by torch (``normae.analysis.flops``) on the eager model and batch, and give each method's MFU.

Time: on CUDA each step is bracketed by CUDA events and nothing in the loop waits for the device, so
the host queues steps as a training loop does; one synchronisation after the loop reads the events.
On CPU, the wall clock around each step.

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

from normae.analysis.flops import count_flops, mfu, peak_facts
from normae.core.model import build_mae, build_mae_from_spec
from normae.spec import DISTILLED_METHODS, SUPERVISED_METHODS, BenchSpec, PretrainSpec
from normae.training.optim import adamw
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


def _forward_backward(model, images, noise, amp, labels=None) -> None:
    with autocast(amp, images.device):
        loss = model(images, noise, labels=labels).loss
    loss.backward()


def _train_step(model, optimizer, images, noise, amp, labels=None):
    optimizer.zero_grad(set_to_none=True)
    _forward_backward(model, images, noise, amp, labels)
    optimizer.step()


class StepTimer:
    """Times steps without making the host wait for the device inside the loop (CUDA events), or by the
    wall clock on a CPU; ``seconds()`` reads them all once the loop is done."""

    def __init__(self, device: torch.device):
        self.device, self.marks = device, []

    def start(self):
        if self.device.type != "cuda":
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def stop(self, started) -> None:
        if self.device.type != "cuda":
            self.marks.append(time.perf_counter() - started)
            return
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        self.marks.append((started, event))

    def seconds(self) -> list[float]:
        if self.device.type != "cuda":
            return list(self.marks)
        torch.cuda.synchronize(self.device)
        return [begin.elapsed_time(end) / 1000 for begin, end in self.marks]


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


def run_bench(spec: BenchSpec, device: str | None = None, images: torch.Tensor | None = None) -> dict:
    """The interleaved measurement that ``spec`` describes (its settings and defaults are BenchSpec's);
    ``images`` (batch_size, 3, img_size, img_size): what the steps see (default: synthetic, standard
    normal). With ``spec.compile``, each method's model through ``torch.compile``."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = resolve_amp(spec.amp, device)
    synthetic = images is None
    generator = torch.Generator().manual_seed(spec.seed)
    labels = torch.randint(0, BENCH_CLASSES, (spec.batch_size,), generator=torch.Generator().manual_seed(spec.seed))
    labels = labels.to(device)
    if images is None:
        images = torch.randn(spec.batch_size, 3, spec.img_size, spec.img_size, generator=generator)
    images = images.to(device)
    nets = {
        method: _bench_model(
            method, spec.model, spec.img_size, spec.patch_size, spec.lam, spec.cnp, amp, spec.seed, spec.teacher_model
        ).to(device)
        for method in spec.methods.split(",")
    }
    num_patches = nets["mae"].patch_embed.num_patches
    noises = [
        torch.rand(spec.batch_size, num_patches, generator=generator).to(device)
        for _ in range(spec.warmup + spec.steps)
    ]
    step = (images, amp, labels)
    built, flops = _built(nets, step, noises[0], spec.compile, device)
    times, peaks = _timed(built, step, noises, spec.warmup, device)
    _add_cpu_peaks(built, step, noises, device, peaks)
    return _bench_result(spec, device, amp, synthetic, built, times, peaks, flops)


def _built(nets: dict, step: tuple, noise: torch.Tensor, compile: bool, device: torch.device):
    """Each method's (model, optimiser), compiled where asked (one untimed step), and its FLOPs per step
    (counted on the eager model: a compiled one runs the same operations; the gradients then dropped)."""
    images, amp, labels = step
    built, flops = {}, {}
    for method, net in nets.items():
        flops[method] = count_flops(lambda net=net: _forward_backward(net, images, noise, amp, labels))
        net.zero_grad(set_to_none=True)
        built[method] = (torch.compile(net) if compile else net, adamw(net.parameters(), 1e-4, (0.9, 0.95), device))
        if compile:  # the compilation: one untimed step, before any timed one
            _train_step(*built[method], images, noise, amp, labels)
    return built, flops


def _timed(built: dict, step: tuple, noises: list, warmup: int, device: torch.device):
    """Every method's step times after ``warmup`` steps, the methods interleaved (their order reversed every
    other step), and on CUDA each step's peak memory."""
    images, amp, labels = step
    timers = {name: StepTimer(device) for name in built}
    peaks: dict[str, list[float]] = {name: [] for name in built}
    for i, noise in enumerate(noises):
        for name in list(built) if i % 2 == 0 else list(reversed(built)):
            net, optimizer = built[name]
            if device.type == "cuda":  # the allocator's books are kept on the host: no wait for the device
                torch.cuda.reset_peak_memory_stats(device)
            started = timers[name].start()
            _train_step(net, optimizer, images, noise, amp, labels)
            if i >= warmup:
                timers[name].stop(started)
                if device.type == "cuda":
                    peaks[name].append(torch.cuda.max_memory_allocated(device) / 2**20)
    return {name: timer.seconds() for name, timer in timers.items()}, peaks


def _add_cpu_peaks(built: dict, step: tuple, noises: list, device: torch.device, peaks: dict) -> None:
    """On the CPU, each method's peak memory over two more steps, measured after the timing: returning freed
    memory to the system before every step makes the next step page it in again, which would distort the
    times."""
    cpu_memory = CpuPeakMemory() if device.type == "cpu" else None
    if cpu_memory is None or not cpu_memory.available:
        return
    images, amp, labels = step
    for name, (net, optimizer) in built.items():
        for noise in noises[:2]:
            cpu_memory.start()
            _train_step(net, optimizer, images, noise, amp, labels)
            peaks[name].append(cpu_memory.peak_mib())


def _bench_result(spec: BenchSpec, device, amp: str, synthetic: bool, built, times, peaks, flops) -> dict:
    """The measurement as one JSON object: the setting, then per method its speed, memory, FLOPs and MFU,
    then NoR-MAE over MAE and over DMAE (the paper's two cost claims)."""
    peak = peak_facts(device, amp)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": spec.model,
        "img_size": spec.img_size,
        "patch_size": spec.patch_size,
        "batch_size": spec.batch_size,
        "steps": spec.steps,
        "amp": amp,
        "precision": amp,
        "compile": spec.compile,
        "fused_attention": fused_attention(built["mae"][0]),
        "cnp": spec.cnp,
        "timing": "cuda_events" if device.type == "cuda" else "wall_clock",
        "memory_kind": "cuda_max_allocated_mib" if device.type == "cuda" else "cpu_peak_rss_growth_mib",
        "methods": list(built),
        "images": "synthetic" if synthetic else "given",
        **peak,
    }
    for name in built:
        median = statistics.median(times[name])
        result[name] = {
            "median_step_s": median,
            "images_per_s": spec.batch_size / median,
            "peak_memory_mib": max(peaks[name]) if peaks[name] else None,
            "step_times_s": times[name],
            "flops_per_step": flops[name],
            "achieved_flops_per_s": flops[name] / median,
            "mfu": mfu(flops[name], median, peak["peak_flops_per_s"]),
        }
    # Median of per-iteration ratios: each pair of steps ran back to back, so slow spells of a
    # shared machine cancel out of the ratio.
    for other in ("mae", "dmae"):  # the paper's two claims: vs MAE (<= 2 % time) and vs DMAE ("50 % less cost")
        if other in times and "nor_mae" in times:
            result[f"nor_over_{other}_time"] = statistics.median(n / m for n, m in zip(times["nor_mae"], times[other]))
            base, nor = result[other]["peak_memory_mib"], result["nor_mae"]["peak_memory_mib"]
            result[f"nor_over_{other}_memory"] = nor / base if base and nor else None
    if "dmae" in built:
        result["teacher_model"] = spec.teacher_model
    return result


def fused_attention(model: torch.nn.Module) -> bool:
    """Whether every attention module of ``model`` (through a torch.compile wrapper) runs timm's fused
    attention (``F.scaled_dot_product_attention``); False if it has none."""
    flags = [module.fused_attn for module in model.modules() if hasattr(module, "fused_attn")]
    return bool(flags) and all(flags)
