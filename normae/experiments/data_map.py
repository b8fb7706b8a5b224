"""Where each data set lies on disk: config/config.yaml's ``data:`` map, overridden per command; and
which sets a plan reads (``needed_datasets``).

One map for the whole workflow, so ImageNet and the eight torchvision sets each have their own
folder. Snakemake merges it from config.yaml, a profile's config file and ``--config
data='{imagenet1k: /path}'``; the normae commands read config.yaml's and take ``--data NAME=FOLDER``.
The planner writes the folder into every spec (``data_root``), so each run folder's spec.json
records what it read. No torch import.
"""

from __future__ import annotations

from pathlib import Path

from normae.data.registry import FOLDER_DATASETS, folder_key
from normae.errors import ConfigError

CONFIG_FILE = "config.yaml"


def read_data_map(config_dir: str | Path) -> dict[str, str | None]:
    """config.yaml's ``data:`` map (checked against the workflow's config schema), every key present."""
    from normae.experiments.config import load_workflow_config

    path = Path(config_dir) / CONFIG_FILE
    data = load_workflow_config(path).get("data") or {} if path.exists() else {}
    return normalised(data, str(path))


def normalised(data: dict, where: str) -> dict[str, str | None]:
    """Every data-map key, unset ones as None; an unknown key is an error naming the known ones."""
    unknown = sorted(set(data) - set(FOLDER_DATASETS))
    if unknown:
        hint = " (ImageNet-100 is read from the imagenet1k folder)" if "imagenet100" in unknown else ""
        raise ConfigError(
            f"{where}: data map keys {unknown} are not data sets read from a folder; known: "
            f"{', '.join(FOLDER_DATASETS)}{hint}"
        )
    return {key: (str(data[key]) if data.get(key) not in (None, "") else None) for key in FOLDER_DATASETS}


def with_overrides(data_map: dict[str, str | None], options: list[str] | None) -> dict[str, str | None]:
    """The map with ``NAME=FOLDER`` options applied (``NAME=`` unsets a folder)."""
    overrides = {}
    for option in options or []:
        name, sep, folder = option.partition("=")
        if not sep or not name:
            raise ConfigError(f"--data {option!r}: write NAME=FOLDER, e.g. --data imagenet1k=/datasets/imagenet")
        overrides[name.strip()] = folder.strip()
    return {**data_map, **normalised(overrides, "--data")} if overrides else dict(data_map)


def as_options(data_map: dict[str, str | None]) -> list[str]:
    """``--data NAME=FOLDER`` options that rebuild ``data_map`` in another process (unset keys as NAME=)."""
    options = []
    for key in FOLDER_DATASETS:
        options += ["--data", f"{key}={data_map.get(key) or ''}"]
    return options


def folder_for(data_map: dict[str, str | None] | None, dataset: str) -> str | None:
    """The folder ``dataset`` is read from (None: not set, or the set needs none)."""
    key = folder_key(dataset)
    return (data_map or {}).get(key) if key else None


def unset_message(dataset: str) -> str:
    """The fix for a data set whose folder is not set."""
    key = folder_key(dataset) or dataset
    return (
        f"set data.{key} in config/config.yaml (or a profile's config file), or pass "
        f"--config data='{{{key}: /path}}' to snakemake / --data {key}=/path to normae"
    )


def needed_datasets(plan) -> list[str]:
    """Every data set a run of the plan or a measurement reads, in a stable order."""
    names = [spec.dataset for spec in [*plan.pretrain.values(), *plan.evaluations.values()]]
    names += [spec.dataset for spec in plan.measurements.values() if spec.dataset]
    names += [source for source in plan.scale.analysis.get("cnp_similarity", {})]
    return list(dict.fromkeys(names))
