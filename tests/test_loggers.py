"""TensorBoard runs named by readable labels, and the optional W&B and MLflow loggers (both offline)."""

import re
import time

import pytest

from normae.errors import ConfigError
from normae.experiments import plan as normae_plan
from normae.paths import TENSORBOARD_DIR, ResultsLayout, readable_label
from normae.training.events import EventLog
from normae.training.loggers import LOGGERS_VARIABLE, chosen_loggers

RUN_ID = "fashion_mnist-finetune-from-fmnist-vit_mini-p4-nor_mae-lam0.0022-mr0.75-ep1-s0-591bdd14-ep1-s0-39418443"
LABEL = "finetune/fashion_mnist from fmnist-vit_mini-p4-nor_mae-lam0.0022-mr0.75-ep1-s0, ep1-s0"
SPEC = {"method": "nor_mae", "lam": 0.0022, "seed": 0, "epochs": 1}
RECORDS = [
    {"kind": "step", "epoch": 0, "step": 1, "loss": 1.0, "lr": 1e-4},
    {"kind": "step", "epoch": 0, "step": 2, "loss": 0.5, "lr": 2e-4},
    {"kind": "epoch", "epoch": 1, "step": 2, "loss": 0.75},
]


def logged_run(root, monkeypatch, loggers: str, records=RECORDS, steps_done: int = 0):
    """A run folder in the results layout under ``root`` that logged ``records`` with ``loggers``."""
    monkeypatch.setenv(LOGGERS_VARIABLE, loggers)
    run = ResultsLayout(root).run(RUN_ID)
    lines = []
    events = EventLog(run.events_dir, rank=0, log=lines.append, spec=SPEC)
    events.start(steps_done)
    for record in records:
        events.write(record)
    events.close()
    return run, lines


def test_the_example_label_reads_as_documented():
    assert readable_label(RUN_ID) == LABEL
    assert (
        readable_label("fmnist-vit_micro-p2-mae-mr0.75-ep1-s0-c364a59a")
        == "pretrain/fmnist-vit_micro-p2-mae-mr0.75-ep1-s0"
    )
    assert readable_label("bench-vit_tiny-p16-224px-b8-synthetic-51a12915").startswith("bench/")


@pytest.mark.parametrize("scale", ["tiny", *(pytest.param(s, marks=pytest.mark.slow) for s in ("cpu", "gpu", "paper"))])
def test_labels_are_unique_and_name_the_stage_at_every_scale(scale):
    plan = normae_plan.expand(normae_plan.load_experiments(), normae_plan.load_scale(scale))
    specs = {**plan.pretrain, **plan.evaluations, **plan.measurements}
    stages = {run_id: spec.stage for run_id, spec in specs.items()}
    labels = {run_id: readable_label(run_id) for run_id in stages}
    assert len(set(labels.values())) == len(labels)
    assert all(labels[run_id].split("/")[0] == stage for run_id, stage in stages.items())
    assert not any(re.search(r"-[0-9a-f]{8}\b", label) for label in labels.values())


def test_tensorboard_lists_runs_by_label(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    run, lines = logged_run(tmp_path, monkeypatch, "tensorboard")
    logs = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / TENSORBOARD_DIR))
    logs.Reload()
    assert list(logs.Runs()) == [LABEL], lines
    assert [event.value for event in logs.Scalars(LABEL, "step/loss")] == [1.0, 0.5]
    logged_run(tmp_path, monkeypatch, "tensorboard", steps_done=2)  # a resumed session keeps the one link
    assert [path.name for path in (tmp_path / TENSORBOARD_DIR / "finetune").iterdir()] == [LABEL.split("/")[1]]


def test_a_run_outside_the_results_layout_gets_no_link(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setenv(LOGGERS_VARIABLE, "tensorboard")
    events = EventLog(tmp_path / "somewhere" / "events", log=print)
    events.start(0)
    events.write(RECORDS[0])
    events.close()
    assert list((tmp_path / "somewhere" / "events").glob("events.out.tfevents.*"))
    assert not (tmp_path / TENSORBOARD_DIR).exists()


def test_loggers_are_a_comma_list_of_known_names(monkeypatch):
    monkeypatch.delenv(LOGGERS_VARIABLE, raising=False)
    assert chosen_loggers() == ("tensorboard",)
    assert chosen_loggers(" MLflow, wandb,mlflow ") == ("mlflow", "wandb")
    with pytest.raises(ConfigError, match="unknown loggers \\['tensorbord'\\].*tensorboard, wandb, mlflow"):
        chosen_loggers("tensorbord")


def test_without_tensorboard_in_the_list_no_event_files(tmp_path, monkeypatch):
    run, _ = logged_run(tmp_path, monkeypatch, "")
    assert not run.events_dir.exists() and not (tmp_path / TENSORBOARD_DIR).exists()


def test_a_missing_logger_package_is_named_once(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # its import now raises ImportError
    _, lines = logged_run(tmp_path, monkeypatch, "wandb")
    assert lines == ["wandb is not installed: no wandb logging (pip install 'normae[wandb]')"]


@pytest.mark.slow  # W&B starts its service process: several seconds
def test_wandb_offline_gets_the_records_and_the_spec(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run, lines = logged_run(tmp_path, monkeypatch, "wandb")
    (records,) = (run.path / "wandb").glob("offline-run-*/run-*.wandb")  # what `wandb sync` uploads
    for _ in range(100):  # W&B's service process writes them after finish() returns
        written = records.read_bytes()  # protobuf records: the names and the config's keys are plain bytes
        if b"epoch/loss" in written:
            break
        time.sleep(0.1)
    assert LABEL.encode() in written and b"step/loss" in written and b"epoch/loss" in written, lines
    assert all(key.encode() in written for key in SPEC)


@pytest.mark.slow  # MLflow's import and file store: several seconds
def test_mlflow_file_store_gets_the_records_and_the_spec_and_a_resume_continues_the_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # the logger allows its file store itself
    logged_run(tmp_path, monkeypatch, "mlflow", RECORDS[:1])
    logged_run(tmp_path, monkeypatch, "mlflow", RECORDS[1:], steps_done=1)  # the resumed session
    client = MlflowClient(tracking_uri=(tmp_path / "results" / "mlflow").as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("normae").experiment_id])
    assert found.info.run_name == LABEL and found.info.status == "FINISHED"
    assert found.data.params["lam"] == "0.0022" and found.data.params["method"] == "nor_mae"
    history = client.get_metric_history(found.info.run_id, "step/loss")
    assert [(metric.step, metric.value) for metric in history] == [(1, 1.0), (2, 0.5)]
