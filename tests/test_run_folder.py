"""A run folder answers only for its own spec: every stage and the launcher check the folder's spec
before anything else, finished or not; its files are read with errors that name them."""

import json

import pytest

from normae.cluster.launch import launch
from normae.errors import MissingResultError, RunFolderError
from normae.paths import ResultsLayout, RunFolder
from normae.spec import load_spec
from normae.stages import pretrain, transfer

from helpers import downstream_spec, small_spec


def folder_of_another_run(tmp_path, finished: bool) -> tuple[RunFolder, object]:
    """A folder holding a MAE spec (and its summary if ``finished``); returns it and that spec."""
    other = small_spec(method="mae", lam=0.0, seed=7)
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.write_spec(other)
    if finished:
        folder.write_summary({"run_id": other.run_id(), "final": {"loss": 1.0}})
    return folder, other


@pytest.mark.parametrize("finished", [True, False])
@pytest.mark.parametrize("stage", ["pretrain", "finetune", "linprobe"])
def test_every_stage_refuses_a_folder_of_another_spec(tmp_path, stage, finished):
    folder, other = folder_of_another_run(tmp_path, finished)
    spec = small_spec() if stage == "pretrain" else downstream_spec(stage)
    run = pretrain.run_pretrain if stage == "pretrain" else transfer.run_transfer
    with pytest.raises(RunFolderError, match=f"{other.digest()[:8]}.*{spec.digest()[:8]}"):
        run(spec, folder.path)
    assert load_spec(folder.spec_path).digest() == other.digest()
    assert not folder.checkpoint_path.exists()


@pytest.mark.parametrize("launcher", ["inprocess", "local"])
def test_launch_refuses_a_folder_of_another_spec_before_submitting(tmp_path, launcher):
    folder, other = folder_of_another_run(tmp_path, finished=True)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(small_spec().to_json())
    with pytest.raises(RunFolderError, match="holds another run"):
        launch(spec_path, folder.path, launcher=launcher)
    assert not folder.job_record_path.exists() and not folder.submitit_dir.exists()


def test_the_same_spec_is_welcome(tmp_path):
    spec = small_spec()
    folder = RunFolder(tmp_path / "run")
    folder.write_spec(spec)
    folder.write_spec(spec)
    folder.check_spec(spec)
    assert load_spec(folder.spec_path) == spec


def test_corrupt_files_are_errors_that_name_them(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    assert folder.read_summary() is None and not folder.is_finished()
    folder.summary_path.write_text("{not json")
    with pytest.raises(MissingResultError, match="summary.json is not valid JSON"):
        folder.read_summary()
    folder.summary_path.write_text("[1, 2]")
    with pytest.raises(MissingResultError, match="holds no summary"):
        folder.read_summary()
    folder.metrics_path.write_text(json.dumps({"kind": "epoch", "epoch": 1}) + "\n{broken\n")
    with pytest.raises(MissingResultError, match="metrics.jsonl, line 2"):
        folder.read_metrics()
    folder.spec_path.write_text("{")
    with pytest.raises(RunFolderError, match="unreadable"):
        folder.check_spec(small_spec())


def test_results_layout_matches_the_plans_checkpoint_paths():
    from normae.experiments.config import CONFIG_DIR
    from normae.experiments.plan import expand, load_experiments, load_scale, read_reported

    plan = expand(
        load_experiments(CONFIG_DIR / "experiments.yaml"),
        load_scale("tiny"),
        read_reported(CONFIG_DIR / "reported.csv"),
    )
    layout = ResultsLayout()
    for spec in plan.evaluations.values():
        if spec.init == "none":  # the evidence table's randomly initialised encoder
            continue
        pretrain_id = RunFolder(spec.init).path.parent.name
        assert spec.init == str(layout.run(pretrain_id).checkpoint_path)
        assert pretrain_id in plan.pretrain
