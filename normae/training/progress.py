"""Where a run is, for a person watching it: a tqdm bar on a terminal, plain periodic lines otherwise (cluster logs)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from normae.training.schedule import LoopConfig
from normae.training.state import LoopState


def progress_reporter(
    state: LoopState, cfg: LoopConfig, steps_per_epoch: int, rank: int, log: Callable[[str], None]
) -> Callable[[dict, float], None]:
    """A function ``(record, lr)`` to call after every optimiser step of the current epoch."""
    label = f"epoch {state.epoch + 1}/{cfg.epochs}"
    if rank == 0 and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=steps_per_epoch, initial=state.batches_done // cfg.accum_iter, desc=label, leave=False)

        def update(record, lr):
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
            if bar.n >= steps_per_epoch:
                bar.close()

        return update

    def report(record, lr):
        if state.optimizer_steps % cfg.log_every == 0:
            log(
                f"{label} step {state.optimizer_steps} lr {lr:.3e} "
                + " ".join(f"{k}={v:.4g}" for k, v in record.items())
            )

    return report
