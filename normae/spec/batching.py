"""How a run's global batch splits over processes, forward passes and accumulation (torch-free).

The paper fixes the batch per optimiser step over all GPUs (pre-training 4096 on ImageNet-1K, 2048
on ImageNet-100; MAE's fine-tuning 512 and linear probing 16,384). A spec with ``global_batch``
states that number; the hardware only decides how it is reached: each of the ``world_size``
processes takes ``global_batch / world_size`` images per step, in forward passes of at most
``batch_size`` images, accumulated. The result does not depend on the split (every sample's
randomness is keyed by its index, and the images of a step are the same for any world size), so
the split is not part of the run's digest; the global batch is.

The launcher and the planner call ``world_size_problem`` before a job is queued, so a world size
that does not divide the global batch fails in seconds, not on the node.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from normae.errors import ConfigError


@dataclass(frozen=True)
class BatchPlan:
    """What one optimiser step is made of. ``requested``: the spec's global batch (None: none was set)."""

    global_batch: int
    per_process: int
    micro_batch: int
    accum_iter: int
    world_size: int
    requested: int | None = None

    @property
    def capped(self) -> bool:
        """True when the data set could not fill the requested global batch (then it is all the set holds)."""
        return self.requested is not None and self.global_batch < self.requested

    def facts(self) -> dict:
        """For summary.json: the split that ran, the requested batch, and whether it was capped."""
        return {**asdict(self), "capped": self.capped}


def world_size_problem(global_batch: int | None, world_size: int) -> str | None:
    """Why ``world_size`` processes cannot share ``global_batch`` evenly, or None."""
    if global_batch is None or global_batch % world_size == 0:
        return None
    fitting = [n for n in (1, 2, 4, 8, 16, 32, 64) if global_batch % n == 0 and n <= global_batch]
    return (
        f"global_batch {global_batch} is not divisible by the world size {world_size} (processes = nodes x tasks "
        f"per node): run on a process count that divides it (e.g. {', '.join(map(str, fitting[-4:]))})"
    )


def largest_divisor_at_most(number: int, limit: int) -> int:
    """The largest divisor of ``number`` that is at most ``limit`` (1 at worst)."""
    for candidate in range(min(number, limit), 0, -1):
        if number % candidate == 0:
            return candidate
    return 1


def plan_batch(
    global_batch: int | None, batch_size: int, accum_iter: int, world_size: int, dataset_len: int
) -> BatchPlan:
    """The split of one step for this world size and data set.

    Without a global batch: ``batch_size`` x ``accum_iter`` per process, as given. With one: each
    process takes ``global_batch / world_size`` images per step in forward passes of the largest
    size that divides it and is at most ``batch_size``. A set smaller than one global batch caps
    it to the largest multiple of (processes x forward pass) the set can fill, and the cap is
    recorded (``requested`` > ``global_batch``).
    """
    if global_batch is None:
        per_process = batch_size * accum_iter
        return BatchPlan(per_process * world_size, per_process, batch_size, accum_iter, world_size)
    problem = world_size_problem(global_batch, world_size)
    if problem:
        raise ConfigError(problem)
    per_process = global_batch // world_size
    micro = largest_divisor_at_most(per_process, batch_size)
    available = dataset_len // world_size  # images each process sees per epoch (DistributedSampler, drop_last)
    if available < per_process:
        if available < 1:
            raise ConfigError(
                f"{dataset_len} images cannot give each of {world_size} processes one image: use more data"
            )
        micro = min(micro, available)
        per_process = available // micro * micro
    return BatchPlan(per_process * world_size, per_process, micro, per_process // micro, world_size, global_batch)
