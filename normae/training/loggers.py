"""Weights & Biases and MLflow beside TensorBoard: the same scalars EventLog writes, and the spec as config.

Which loggers a run uses is set in the environment, ``NORMAE_LOGGERS=tensorboard,wandb,mlflow`` (a comma
list; default ``tensorboard``), so that choosing one changes no spec, run id or plan, and it reaches every
job (Snakemake's and SLURM's inherit the environment). Each is optional: ``pip install 'normae[wandb]'``
or ``'normae[mlflow]'``; where its package is missing the run says so once and goes on without it.

- W&B: ``WANDB_MODE=offline`` works without network (``wandb sync`` uploads later); the run's files go
  into the run folder (``wandb/``); ``WANDB_PROJECT`` names the project (default ``normae``). A resumed
  run continues the same W&B run (its id comes from the run folder).
- MLflow: the tracking URI is ``MLFLOW_TRACKING_URI`` or a file store, ``results/mlflow`` beside the run's
  ``results/runs`` (``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri file:results/mlflow``); a
  resumed run continues the MLflow run tagged with its run id.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from normae.errors import ConfigError
from normae.paths import MLFLOW_DIR, readable_label, results_root_of

LOGGERS_VARIABLE = "NORMAE_LOGGERS"
DEFAULT_LOGGERS = "tensorboard"
KNOWN_LOGGERS = ("tensorboard", "wandb", "mlflow")
PROJECT = "normae"  # the W&B project and the MLflow experiment, unless WANDB_PROJECT / MLFLOW_EXPERIMENT_NAME
RUN_ID_TAG = "normae.run_id"


def chosen_loggers(text: str | None = None) -> tuple[str, ...]:
    """The loggers ``text`` (default: the environment's NORMAE_LOGGERS) names, each once, in its order."""
    text = os.environ.get(LOGGERS_VARIABLE, DEFAULT_LOGGERS) if text is None else text
    names = tuple(dict.fromkeys(name.strip().lower() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in KNOWN_LOGGERS]
    if unknown:
        raise ConfigError(
            f"{LOGGERS_VARIABLE}={text!r} names unknown loggers {unknown}: "
            f"use a comma list of {', '.join(KNOWN_LOGGERS)}"
        )
    return names


class WandbLog:
    """One W&B run per run folder."""

    def __init__(self, run_dir: Path, spec: dict):
        import wandb

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT),
            id=hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:32],  # W&B ids: 64 characters at most
            name=readable_label(run_dir.name),
            dir=str(run_dir),
            config=spec,
            resume="allow",
        )

    def write(self, scalars: dict[str, float], step: int) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowLog:
    """One MLflow run per run folder, found again on resume by its run-id tag."""

    def __init__(self, run_dir: Path, spec: dict):
        from mlflow import MlflowClient

        root = results_root_of(run_dir)
        store = (root / MLFLOW_DIR) if root is not None else run_dir / "mlruns"
        # MLflow 3 refuses its file store unless asked: it is what many jobs on a shared file system can write
        # at once (SQLite's locks are not safe over NFS). Set MLFLOW_TRACKING_URI for a database or a server.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or store.resolve().as_uri())
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        found = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_dir.name}'", max_results=1
        )
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {RUN_ID_TAG: run_dir.name}
            run = self.client.create_run(experiment_id, run_name=readable_label(run_dir.name), tags=tags)
            self.run_id = run.info.run_id
            self.client.log_dict(self.run_id, spec, "spec.json")
            self.log_params(spec)

    def log_params(self, spec: dict) -> None:
        from mlflow.entities import Param

        params = [Param(key, str(value)) for key, value in sorted(spec.items())]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def write(self, scalars: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step) for key, value in scalars.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


# name -> (its class, the pip package that provides it)
LOGGERS: dict[str, tuple[Callable[[Path, dict], WandbLog | MlflowLog], str]] = {
    "wandb": (WandbLog, "wandb"),
    "mlflow": (MlflowLog, "mlflow"),
}


def start_loggers(names, run_dir: Path, spec: dict, log: Callable[[str], None]) -> list:
    """The chosen loggers other than TensorBoard, started; one that is not installed is named once and left out."""
    started = []
    for name in names:
        if name not in LOGGERS:
            continue
        make, package = LOGGERS[name]
        try:
            started.append(make(run_dir, spec))
        except ImportError:
            log(f"{package} is not installed: no {name} logging (pip install 'normae[{name}]')")
    return started
