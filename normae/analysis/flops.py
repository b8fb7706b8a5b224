"""FLOPs of one training step as torch counts them, and model FLOP utilisation (MFU) against a device's peak.

``count_flops`` runs a callable (one forward and backward of the exact model and batch) under
``torch.utils.flop_counter.FlopCounterMode``: matrix products, convolutions and attention, the work
that tensor cores do; element-wise work and the optimiser are not counted, as is usual for MFU. A
branch run under ``no_grad`` (NoR-MAE's second branch) is counted forward only, as it runs.

torch (2.14) counts attention only for its CUDA kernels (flash, memory-efficient, cuDNN); on CPU
``scaled_dot_product_attention`` runs ``_scaled_dot_product_flash_attention_for_cpu``, which it skips.
We add that op (and its backward) with torch's own attention formulas, so that a CPU count equals the
CUDA count of the same model and batch.

MFU = counted FLOPs / step time / the device's peak dense FLOP/s at the step's precision (bf16 and fp16
share the tensor-core peak; ``none`` is plain fp32 without TF32, torch's default for matrix products).
The peaks are the vendors' datasheet numbers for dense (not 2:4 sparse) math; a device not in the table,
and the CPU, have no MFU (None, with a note saying why).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

# (substring of torch.cuda.get_device_name, dense bf16/fp16 tensor-core FLOP/s, fp32 FLOP/s without TF32).
# The first entry whose substring is in the name wins: more specific names come first ("H100 PCIe" before
# "H100", "L40S" and "L40" before "L4"). An H100 SXM names itself "NVIDIA H100 80GB HBM3".
PEAK_FLOPS: tuple[tuple[str, float, float], ...] = (
    ("H100 PCIe", 756e12, 51.2e12),
    ("H100 NVL", 835e12, 60e12),
    ("GH200", 989.4e12, 67e12),
    ("H100", 989.4e12, 67e12),
    ("H200 NVL", 835e12, 60e12),
    ("H200", 989.4e12, 67e12),
    ("A100", 312e12, 19.5e12),
    ("L40S", 362e12, 91.6e12),
    ("L40", 181e12, 90.5e12),
    ("L4", 121e12, 30.3e12),
)
# Which column of PEAK_FLOPS a resolved --amp reads.
PRECISION_COLUMN = {"bf16": 1, "fp16": 1, "none": 2}


def _already_shaped(formula: Callable) -> Callable:
    """``formula`` (torch's, which takes tensors and ``out_val``) marked for FlopCounterMode to call as it is."""

    def count(*args, **kwargs):
        return formula(*args, **kwargs)

    count._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode's mark of a formula given tensors
    return count


def _cpu_attention_formulas() -> dict:
    """torch's attention formulas for the CPU attention ops it does not map itself (empty if torch lacks them)."""
    aten = torch.ops.aten
    pairs: dict[str, Callable] = {
        "_scaled_dot_product_flash_attention_for_cpu": flop_counter.sdpa_flop,
        "_scaled_dot_product_flash_attention_for_cpu_backward": flop_counter.sdpa_backward_flop,
    }
    return {getattr(aten, name): _already_shaped(formula) for name, formula in pairs.items() if hasattr(aten, name)}


def count_flops(run: Callable[[], object]) -> int:
    """FLOPs that ``run()`` performs (it runs once, for real: gradients it computes are left in place)."""
    with FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas()) as counter:
        run()
    return int(counter.get_total_flops())


def peak_flops(device_name: str, precision: str) -> float | None:
    """The device's peak dense FLOP/s at ``precision`` (a resolved amp: bf16, fp16, none); None if unknown."""
    if precision not in PRECISION_COLUMN:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_COLUMN)}, got {precision!r}")
    for substring, *peaks in PEAK_FLOPS:
        if substring in device_name:
            return peaks[PRECISION_COLUMN[precision] - 1]
    return None


def mfu(flops_per_step: float, step_seconds: float, peak: float | None) -> float | None:
    """Model FLOP utilisation: the fraction of the device's peak that the step's counted FLOPs reach."""
    if peak is None or step_seconds <= 0:
        return None
    return flops_per_step / step_seconds / peak


def peak_facts(device: torch.device, precision: str) -> dict:
    """The device's name, the peak the MFU divides by, and a note when there is none."""
    if device.type != "cuda":
        return {"peak_flops_per_s": None, "mfu_note": f"no MFU on {device.type}: the peak table lists GPUs only"}
    name = torch.cuda.get_device_name(device)
    peak = peak_flops(name, precision)
    note = None if peak is not None else f"no MFU: {name!r} is not in normae.analysis.flops.PEAK_FLOPS; add its peak"
    return {"peak_flops_per_s": peak, "mfu_note": note}
