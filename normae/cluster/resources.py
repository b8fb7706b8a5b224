"""The SLURM resources of one stage's job: the keys, their defaults and their checks (torch- and submitit-free).

The workflow schema (``workflow/schemas/config.schema.yaml``, ``$defs.resources``) lists the same
keys; a test keeps the two equal.
"""

from __future__ import annotations

from typing import Any

from normae.errors import ConfigError

RESOURCE_DEFAULTS: dict[str, Any] = {
    "partition": None,
    "account": None,
    "qos": None,
    "nodes": 1,
    "gpus_per_node": 0,
    "tasks_per_node": None,  # one task per GPU; one task on CPU
    "cpus_per_task": None,
    "mem_gb": None,
    "timeout_min": 24 * 60,
    "constraint": None,
    "additional_parameters": {},  # free-form sbatch options, e.g. {"reservation": "x", "exclusive": true}
    "max_requeues": 3,
    "signal_delay_s": 120,  # USR2 this long before the time limit: time to write a checkpoint and requeue
}


def resources_from(given: dict | None) -> dict:
    """The SLURM resources of one stage: ``given`` over the defaults; unknown keys are an error (typos in config)."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(RESOURCE_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown SLURM resource keys {unknown}; known keys: {', '.join(RESOURCE_DEFAULTS)}")
    resources = {**RESOURCE_DEFAULTS, **given}
    if resources["tasks_per_node"] is None:
        resources["tasks_per_node"] = resources["gpus_per_node"] or 1
    return resources


def num_tasks(resources: dict) -> int:
    return resources["nodes"] * resources["tasks_per_node"]
