"""Reconstruction loss and the Neighbour-Repelling (NoR) loss.

The NoR relation matrix is C = mean over the batch of Z^T Z_cnp / L, a D x D matrix (D = p*p*3).
Its sums never need the matrix itself: for one sample,

    sum of all entries of Z^T Z'  = sum_k (sum_i z_ki) (sum_j z'_kj)
    trace of Z^T Z'               = sum_k sum_i z_ki z'_ki

so the off-diagonal sum (all minus trace) costs O(N*L*D) time and no D x D memory. With tokens
standardised over their last axis, sum_i z_ki = 0 and the off-diagonal sum equals minus the trace.
"""

from __future__ import annotations

import torch

from normae.spec import NorVariant


def standardize_tokens(z: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per token over the last axis: mean 0, divided by sqrt(unbiased variance + eps) (MAE's norm_pix)."""
    mean = z.mean(dim=-1, keepdim=True)
    var = z.var(dim=-1, keepdim=True)
    return (z - mean) / (var + eps) ** 0.5


def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True
) -> torch.Tensor:
    """MSE on the removed patches only. ``pred``/``target`` (N, L, P), ``mask`` (N, L) with 1 = removed."""
    if norm_pix:
        target = standardize_tokens(target)
    per_patch = ((pred.float() - target.float()) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


def nor_loss(
    z: torch.Tensor, z_cnp: torch.Tensor, variant: NorVariant = "offdiag", standardize: bool = True
) -> torch.Tensor:
    """The NoR penalty before lambda, for decoder outputs ``z`` and ``z_cnp`` of shape (N, L, D).

    ``offdiag``: sum of the off-diagonal entries of C (not squared), the paper's loss.
    ``diag``: the trace of C. ``token``: the L x L token relation mean_b Z Z_cnp^T / D, off-diagonal sum.
    The spec checks ``variant`` (``NorVariant``); the loss trusts it.
    """
    z, z_cnp = z.float(), z_cnp.float()
    if standardize:
        z, z_cnp = standardize_tokens(z), standardize_tokens(z_cnp)
    batch, length, dim = z.shape
    if variant == "token":
        diagonal = (z * z_cnp).sum()
        everything = (z.sum(dim=1) * z_cnp.sum(dim=1)).sum()
        return (everything - diagonal) / (batch * dim)
    trace = (z * z_cnp).sum() / (batch * length)
    if variant == "diag":
        return trace
    everything = (z.sum(dim=-1) * z_cnp.sum(dim=-1)).sum() / (batch * length)
    return everything - trace
