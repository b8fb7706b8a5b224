"""Where a run is, for a person watching it: a tqdm bar on a terminal, plain periodic lines otherwise (cluster logs).

The plain lines say where the run is and when it will end, with a timestamp::

    2026-11-27 14:03:11 epoch 1/3 step 10/64 0.36 s/step eta 0:00:19 loss=0.912 lr=1.2e-04
"""

from __future__ import annotations

import datetime
import re
import sys
import time
from collections.abc import Callable

from normae.training.schedule import LoopConfig
from normae.training.state import LoopState


def eta_text(seconds: float) -> str:
    """``H:MM:SS`` for a number of seconds (rounded to the second)."""
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


def progress_line(
    epoch: int, epochs: int, step: int, steps_per_epoch: int, seconds_per_step: float, steps_left: int
) -> str:
    """``epoch 1/3 step 10/64 0.36 s/step eta 0:00:19`` (epochs and steps count from 1)."""
    return (
        f"epoch {epoch}/{epochs} step {step}/{steps_per_epoch} "
        f"{seconds_per_step:.2f} s/step eta {eta_text(seconds_per_step * steps_left)}"
    )


# A plain progress line as ``progress_reporter`` logs it (after the log's prefix), read back by `normae progress`.
PROGRESS_LINE = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?P<where>epoch \d+/\d+ step \d+/\d+) "
    r"(?P<per_step>[0-9.]+) s/step eta (?P<eta>\d+(?: days?, )?\d*:\d\d:\d\d)(?: loss=(?P<loss>\S+))?"
)


def last_progress(text: str) -> re.Match | None:
    """The last progress line in ``text`` (a run's log), parsed; None where it has none."""
    lines = list(PROGRESS_LINE.finditer(text))
    return lines[-1] if lines else None


def progress_reporter(
    state: LoopState,
    cfg: LoopConfig,
    steps_per_epoch: int,
    rank: int,
    log: Callable[[str], None],
    world_size: int = 1,
) -> Callable[[dict, float], None]:
    """A function ``(record, lr)`` to call after every optimiser step of the current epoch."""
    label = f"epoch {state.epoch + 1}/{cfg.epochs}"
    images_per_step = cfg.batch_size * cfg.accum_iter * world_size
    started, first_step = time.perf_counter(), state.batches_done // cfg.accum_iter
    if rank == 0 and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=steps_per_epoch, initial=first_step, desc=label, leave=False, unit="step")

        def update(record, lr):
            bar.update(1)
            done = state.batches_done // cfg.accum_iter - first_step
            rate = images_per_step * done / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{rate:.1f}", lr=f"{lr:.2e}")
            if bar.n >= steps_per_epoch:
                bar.close()

        return update

    def report(record, lr):
        if state.optimizer_steps % cfg.log_every != 0:
            return
        step = state.batches_done // cfg.accum_iter
        per_step = (time.perf_counter() - started) / max(step - first_step, 1)
        steps_left = (cfg.epochs - state.epoch - 1) * steps_per_epoch + steps_per_epoch - step
        where = progress_line(state.epoch + 1, cfg.epochs, step, steps_per_epoch, per_step, steps_left)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log(f"{stamp} {where} " + " ".join(f"{k}={v:.4g}" for k, v in record.items()) + f" lr={lr:.3e}")

    return report
