"""The SLURM resources of one stage's job: the keys, their defaults and their checks (torch- and submitit-free),
and which resource group of the workflow config (``slurm.<group>``) each stage's jobs take.

The workflow schema (``workflow/schemas/config.schema.yaml``, ``$defs.resources``) lists the same
keys; a test keeps the two equal.
"""

from __future__ import annotations

import re
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

# stage -> the workflow config's SLURM resource group (``slurm.<group>`` in config.yaml and the profiles):
# the stages that run a short evaluation share one group. Read by workflow/rules/common.smk.
SLURM_GROUPS: dict[str, str] = {
    "pretrain": "pretrain",
    "finetune": "finetune",
    "linprobe": "evaluate",
    "knn": "evaluate",
    "segment": "segmentation",
    "bench": "evaluate",
}


# An sbatch option name (``additional_parameters``' keys): the schema's propertyNames pattern is the same.
SBATCH_OPTION_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*$"
# Characters that would end an ``#SBATCH`` line, or the script, inside a value.
LINE_BREAKS = ("\n", "\r", "\0")


def _check_script_safe(resources: dict) -> None:
    """Refuse what would put other lines into the sbatch script (``{"comment=a\ntouch X\n#": 1}``
    ran ``touch X`` in the job): an ``additional_parameters`` key that is not an option name, and a line
    break or NUL in any value, nested ones included. Before any script or pickle is written."""
    extra = resources["additional_parameters"]
    if not isinstance(extra, dict):
        raise ConfigError(f"SLURM additional_parameters must be a JSON object, got {extra!r}")
    for key in extra:
        if not isinstance(key, str) or not re.fullmatch(SBATCH_OPTION_PATTERN, key):
            raise ConfigError(
                f"SLURM additional_parameters key {key!r} is not an sbatch option name "
                "(letters, digits, _ and -, starting with a letter)"
            )
    pending: list[tuple[str, Any]] = list(resources.items())
    while pending:
        name, value = pending.pop()
        if isinstance(value, dict):
            pending += [(f"{name}.{key}", item) for key, item in value.items()]
        elif isinstance(value, list | tuple):
            pending += [(f"{name}[{index}]", item) for index, item in enumerate(value)]
        elif any(character in str(value) for character in LINE_BREAKS):
            raise ConfigError(f"SLURM resource {name} holds a line break or NUL ({value!r}): give it on one line")


def resources_from(given: dict | None) -> dict:
    """The SLURM resources of one stage: ``given`` over the defaults; unknown keys are an error (typos in config)."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(RESOURCE_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown SLURM resource keys {unknown}; known keys: {', '.join(RESOURCE_DEFAULTS)}")
    resources = {**RESOURCE_DEFAULTS, **given}
    _check_script_safe(resources)
    if resources["tasks_per_node"] is None:
        resources["tasks_per_node"] = resources["gpus_per_node"] or 1
    return resources


def num_tasks(resources: dict) -> int:
    return resources["nodes"] * resources["tasks_per_node"]
