"""The optimiser every AdamW stage builds (pre-training, fine-tuning, segmentation).

On CUDA it is torch's fused AdamW: one kernel for all parameters instead of a loop of small ones,
with the same update as the default implementation (within float rounding). Elsewhere torch's
default (foreach) implementation.
"""

from __future__ import annotations

import torch


def adamw(params, lr: float, betas: tuple[float, float], device: torch.device | str, weight_decay: float = 0.0):
    """AdamW over ``params`` (tensors or param groups, each group may carry its own weight decay)."""
    fused = torch.device(device).type == "cuda"
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused or None)
