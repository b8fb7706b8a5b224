"""NoR-MAE's diagnostics, measured on the training batch on the first step and then every
``diagnostics_interval(log_every)`` steps: the smallest multiple of ``log_every`` of at least
``MIN_INTERVAL`` (20) steps, so their cost (a diagnosed step takes about 1.8x a plain one on a CPU) stays
under 5 % of the training time, and the spec (``log_every`` is cosmetic) and run id do not change.

- ``nor_grad_share``: ||grad(lam * L_nor)|| / ||grad(L_rec)|| over the trainable parameters (two extra
  backward passes through the retained graph, with ``torch.autograd.grad``: nothing lands in ``.grad``).
- ``branch_alignment``: the mean per-token correlation of the two branches' predictions.
- ``cnp_true_neighbor`` (``--cnp authors_code`` and ``random``): the fraction of kept positions whose
  partner is a true closest neighbour (``--cnp paper`` is 1 by construction).

None of them consumes random numbers or touches the optimiser, so a run's weights do not depend on
them. The step that carries them is written to metrics.jsonl as a ``step`` line (the stage passes
``DIAGNOSTICS`` as the Trainer's ``step_line_metrics``), so every sample is there; the epoch line
holds their epoch mean and ``summary.json`` their first-epoch and run means.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import fmean

import torch

from normae.core.cnp import true_neighbor_fraction

DIAGNOSTICS = ("nor_grad_share", "branch_alignment", "cnp_true_neighbor")
CNP_FRACTION_MODES = ("authors_code", "random")
MIN_INTERVAL = 20


def diagnostics_interval(log_every: int) -> int:
    """The smallest multiple of ``log_every`` that is at least ``MIN_INTERVAL``."""
    return log_every * -(-MIN_INTERVAL // log_every)


def diagnostics_due(optimizer_steps: int, every: int) -> bool:
    """For the optimiser step about to be taken (``optimizer_steps`` done): the first, and every ``every``-th."""
    return optimizer_steps == 0 or (optimizer_steps + 1) % every == 0


def branch_alignment(pred: torch.Tensor, pred_cnp: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Mean over tokens of the Pearson correlation of ``pred`` and ``pred_cnp`` (N, L, D) along D."""
    z = pred.detach().float()
    z_cnp = pred_cnp.detach().float()
    z = z - z.mean(dim=-1, keepdim=True)
    z_cnp = z_cnp - z_cnp.mean(dim=-1, keepdim=True)
    denominator = ((z * z).sum(-1) * (z_cnp * z_cnp).sum(-1)).clamp_min(eps).sqrt()
    return ((z * z_cnp).sum(-1) / denominator).mean()


def _norm(grads: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
    squares = [g.float().pow(2).sum() for g in grads if g is not None]
    return torch.stack(squares).sum().sqrt() if squares else torch.zeros(())


def nor_grad_share(model: torch.nn.Module, out) -> torch.Tensor:
    """||grad(lam * loss_nor)|| / ||grad(loss_rec)|| over ``model``'s trainable parameters; keeps the graph."""
    params = [p for p in model.parameters() if p.requires_grad]
    nor = torch.autograd.grad(model.lam * out.loss_nor, params, retain_graph=True, allow_unused=True)
    rec = torch.autograd.grad(out.loss_rec, params, retain_graph=True, allow_unused=True)
    return (_norm(nor) / _norm(rec).clamp_min(1e-30)).detach()


def diagnostics(model: torch.nn.Module, out) -> dict[str, torch.Tensor]:
    """The diagnostics of one NoR-MAE forward ``out`` (a ``MAEOutput`` whose graph is still there)."""
    values = {
        "nor_grad_share": nor_grad_share(model, out),
        "branch_alignment": branch_alignment(out.pred, out.pred_cnp),
    }
    if model.cnp in CNP_FRACTION_MODES:
        values["cnp_true_neighbor"] = true_neighbor_fraction(
            out.tokens, model.grid, out.cnp_source, out.ids_keep, wrap=model.cnp_wrap
        )
    return values


class DiagnosedStep:
    """Wraps a pre-training ``step_fn(model, batch)``: on due steps, adds the diagnostics to its metrics.

    The model's output is caught by a forward hook on the unwrapped model, so any step function
    (also one a test substitutes) is diagnosed. ``state`` (a callable returning the loop's
    ``LoopState``) says which step the batch belongs to; set it once the Trainer exists.
    """

    def __init__(
        self, step_fn: Callable, module: torch.nn.Module, every: int, accum_iter: int = 1, enabled: bool = True
    ):
        """``enabled``: whether the model has a NoR branch to diagnose (the stage knows its method)."""
        self.step_fn, self.module, self.every, self.accum_iter = step_fn, module, every, accum_iter
        self.enabled = enabled
        self.state: Callable | None = None
        self.caught = None
        module.register_forward_hook(self._catch)

    def _catch(self, module, args, output) -> None:
        self.caught = output

    def due(self) -> bool:
        if self.state is None or not self.enabled:
            return False
        state = self.state()
        boundary = (state.batches_done + 1) % self.accum_iter == 0
        return boundary and diagnostics_due(state.optimizer_steps, self.every)

    def __call__(self, model, batch):
        self.caught = None
        loss, metrics = self.step_fn(model, batch)
        out, self.caught = self.caught, None  # not kept past the step: it holds the graph
        if out is not None and self.due():
            metrics = {**metrics, **diagnostics(self.module, out)}
        return loss, metrics


def diagnostics_summary(history: list[dict], steps: list[dict]) -> dict[str, dict[str, float]]:
    """Each diagnostic's ``run_mean`` (over the step lines that carry it) and ``first_epoch`` mean."""
    summary = {}
    for name in DIAGNOSTICS:
        values = [line[name] for line in steps if name in line]
        if values:
            first = history[0].get(name) if history else None
            summary[name] = {"run_mean": fmean(values), "first_epoch": first, "samples": len(values)}
    return summary
