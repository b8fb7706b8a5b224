"""A run's inputs, fingerprinted once and checked on every resume and every "finished" answer (issue 24).

Each case below was a stale or relabelled result before ``normae.stages.inputs``: a resume or a
"finished" shortcut trusted that what was on disk was made by this spec from these inputs.
"""

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from normae.cli import main
from normae.cluster import launch as launching
from normae.cluster.submitit_adapter import restore_summary
from normae.errors import CheckpointError, MissingResultError
from normae.paths import RunFolder
from normae.report.tables import table_frame
from normae.stages.inputs import data_fingerprint, input_changes, recorded_inputs, run_inputs
from normae.stages.pretrain import run_pretrain

from helpers import downstream_spec, small_spec, write_fashion_mnist, write_spec

ONE_EPOCH = dict(train_samples=16, epochs=1, warmup_epochs=0)
COMPARED = ("final", "history", "optimizer_steps")


def pretrained(folder: Path, **overrides) -> Path:
    """A finished one-epoch pre-training run in ``folder`` (vit_micro at 16 px)."""
    run_pretrain(small_spec(**{**ONE_EPOCH, **overrides}), folder)
    return folder


def retrained(run: Path, other: Path) -> None:
    """``run`` trained again under its id (other weights, as changed code gives): ``other``'s checkpoint."""
    shutil.copyfile(other / RunFolder.CHECKPOINT, run / RunFolder.CHECKPOINT)


def same_numbers(a: dict, b: dict) -> bool:
    return all(a[key] == b[key] for key in COMPARED)


# ---------------------------------------------------------------- the data fingerprint


def test_the_data_fingerprint_sees_files_and_sizes_not_places_or_times(tmp_path):
    write_fashion_mnist(tmp_path / "A", 32, 8)
    print_a = data_fingerprint(tmp_path / "A")
    shutil.copytree(tmp_path / "A", tmp_path / "staged")  # another node's disk: other path, other mtimes
    time.sleep(0.01)
    (tmp_path / "staged" / "t10k-labels-idx1-ubyte").touch()
    assert data_fingerprint(tmp_path / "staged") == print_a
    write_fashion_mnist(tmp_path / "B", 40, 8)
    assert data_fingerprint(tmp_path / "B") != print_a
    (tmp_path / "staged" / "extra.txt").write_text("x")
    assert data_fingerprint(tmp_path / "staged") != print_a
    assert data_fingerprint(None) is None and data_fingerprint(tmp_path / "missing") is None


def test_a_link_cycle_in_the_data_folder_is_walked_once(tmp_path):
    write_fashion_mnist(tmp_path / "A", 8, 8)
    (tmp_path / "A" / "loop").symlink_to(tmp_path / "A")
    assert data_fingerprint(tmp_path / "A").startswith("files:")


def test_what_counts_as_a_changed_input():
    now = {"spec": "s1", "upstream": "sha256:b", "teacher": None, "data": "files:d"}
    assert input_changes({}, now) == ""  # recorded before inputs were: unrecorded, unchanged
    assert input_changes({"data": "files:d"}, now) == ""  # the keys it lacks are unrecorded
    assert input_changes({**now, "teacher": "sha256:t"}, now) == ""  # no teacher now: nothing to compare
    assert input_changes({**now, "upstream": None}, now) == (
        "upstream changed: was trained from an unrecorded upstream, this run starts from sha256:b"
    )
    assert input_changes({**now, "spec": "s0", "data": "files:e"}, now) == (
        "spec changed: was trained from s0, this run starts from s1; "
        "data changed: was trained from files:e, this run starts from files:d"
    )
    assert recorded_inputs({"init_digest": "sha256:a"}) == {"upstream": "sha256:a"}  # an evaluation's, from before


# ---------------------------------------------------------------- n120: a data-map change


def test_a_data_map_change_to_other_images_restarts_the_run(tmp_path, capsys):
    write_fashion_mnist(tmp_path / "A", 32, 8, gzipped=())
    write_fashion_mnist(tmp_path / "B", 40, 8, gzipped=())  # other images, same run id
    on_a = small_spec(dataset="fashion_mnist", data_root=str(tmp_path / "A"), **ONE_EPOCH)
    on_b = small_spec(dataset="fashion_mnist", data_root=str(tmp_path / "B"), **ONE_EPOCH)
    assert on_a.run_id() == on_b.run_id()
    folder = RunFolder(tmp_path / "run")
    assert launching.launch(write_spec(tmp_path, on_a, "a.json"), folder.path) == 0
    first = folder.require_summary()

    capsys.readouterr()  # the workflow relaunches the run with the new data map
    assert launching.launch(write_spec(tmp_path, on_b, "b.json"), folder.path) == 0
    log = capsys.readouterr().err
    assert "is stale (data changed" in log and "starting afresh" in log
    assert folder.stale_summary_path.exists()
    fresh = RunFolder(tmp_path / "fresh")
    assert launching.launch(tmp_path / "b.json", fresh.path) == 0
    again = folder.require_summary()
    assert same_numbers(again, fresh.require_summary()) and not same_numbers(again, first)
    assert again["inputs"]["data"] == data_fingerprint(tmp_path / "B") != first["inputs"]["data"]


# ---------------------------------------------------------------- n07: a re-trained teacher


def student(teacher: Path, **overrides):
    return small_spec(method="dmae", teacher=str(teacher), teacher_model="vit_micro", **{**ONE_EPOCH, **overrides})


def test_a_dmae_student_restarts_when_its_teacher_was_trained_again(tmp_path, capsys):
    teacher, other = (
        pretrained(tmp_path / "teacher", method="mae"),
        pretrained(tmp_path / "other", method="mae", seed=1),
    )
    spec_path = write_spec(tmp_path, student(teacher))
    folder = RunFolder(tmp_path / "student")
    assert launching.launch(spec_path, folder.path) == 0
    first = folder.require_summary()

    retrained(teacher, other)
    folder.summary_path.unlink()  # Snakemake re-runs the student ("Updated input files"): its output goes first
    capsys.readouterr()
    assert launching.launch(spec_path, folder.path) == 0
    assert "teacher changed" in capsys.readouterr().err
    fresh = RunFolder(tmp_path / "fresh")
    assert launching.launch(spec_path, fresh.path) == 0
    again = folder.require_summary()
    assert same_numbers(again, fresh.require_summary()) and not same_numbers(again, first)


def test_a_teacher_that_is_an_unfinished_run_is_refused(tmp_path):
    teacher = pretrained(tmp_path / "teacher", method="mae")
    RunFolder(teacher).summary_path.unlink()  # its checkpoint is some epoch of a run still going
    out = tmp_path / "student"
    with pytest.raises(CheckpointError, match=r"--teacher .*teacher is an unfinished run"):
        run_pretrain(student(teacher), out)
    assert not out.exists()


# ---------------------------------------------------------------- n06: a foreign checkpoint


def test_a_checkpoint_of_another_spec_is_not_resumed(tmp_path, capsys):
    folder = RunFolder(pretrained(tmp_path / "run"))  # seed 0, lambda 0.01
    folder.spec_path.unlink()
    folder.summary_path.unlink()
    other = small_spec(seed=1, lam=0.5, **ONE_EPOCH)
    capsys.readouterr()
    assert main(["pretrain", "--spec", str(write_spec(tmp_path, other)), "--out", str(folder.path), "--resume"]) == 0
    assert "spec changed" in capsys.readouterr().err
    fresh = run_pretrain(other, tmp_path / "fresh")
    assert same_numbers(folder.require_summary(), fresh)


# ---------------------------------------------------------------- n109: a finished evaluation, upstream re-trained


def evaluation(init: Path):
    return downstream_spec(
        "linprobe", init=str(init), img_size=16, train_samples=16, eval_samples=16, batch_size=8, amp="none"
    )


def test_a_finished_evaluation_relaunched_after_its_upstream_was_trained_again_runs_again(tmp_path, capsys):
    upstream, other = pretrained(tmp_path / "up"), pretrained(tmp_path / "other", seed=1)
    spec_path = write_spec(tmp_path, evaluation(upstream / RunFolder.CHECKPOINT))
    folder = RunFolder(tmp_path / "eval")
    assert launching.launch(spec_path, folder.path) == 0
    first = folder.require_summary()
    capsys.readouterr()
    assert launching.launch(spec_path, folder.path) == 0  # unchanged: finished, nothing runs
    assert "already finished" in capsys.readouterr().err and folder.require_summary() == first

    retrained(upstream, other)
    assert launching.launch(spec_path, folder.path) == 0
    log = capsys.readouterr().err
    assert "is stale (upstream changed" in log and "already finished" not in log
    again = folder.require_summary()
    assert again["init_digest"] == run_inputs(evaluation(upstream / RunFolder.CHECKPOINT))["upstream"]
    assert again["init_digest"] != first["init_digest"]


# ---------------------------------------------------------------- launch (local / slurm): stale, not finished


def test_launch_reports_a_stale_finished_run_and_submits_it(tmp_path, monkeypatch, capsys):
    upstream, other = pretrained(tmp_path / "up"), pretrained(tmp_path / "other", seed=1)
    spec_path = write_spec(tmp_path, evaluation(upstream / RunFolder.CHECKPOINT))
    folder = RunFolder(tmp_path / "eval")
    folder.path.mkdir()
    folder.write_summary({"run_id": "x", "inputs": run_inputs(evaluation(upstream / RunFolder.CHECKPOINT))})
    submitted = []
    monkeypatch.setattr(launching, "run_as_job", lambda *args: submitted.append(args) or 0)
    assert launching.launch(spec_path, folder.path, "local") == 0
    assert submitted == [] and "already finished; nothing to submit" in capsys.readouterr().err

    retrained(upstream, other)
    assert launching.launch(spec_path, folder.path, "local") == 0
    assert len(submitted) == 1 and "is stale (upstream changed" in capsys.readouterr().err
    assert not folder.summary_path.exists() and folder.stale_summary_path.exists()


def test_the_launcher_restores_no_stale_copy_of_a_summary(tmp_path, capsys):
    """Snakemake deletes summary.json before it relaunches; the ended job's copy of it is as stale as it was."""
    upstream, other = pretrained(tmp_path / "up"), pretrained(tmp_path / "other", seed=1)
    spec = evaluation(upstream / RunFolder.CHECKPOINT)
    folder = RunFolder(tmp_path / "eval")
    folder.path.mkdir()
    copy = {"run_id": spec.run_id(), "stage": spec.stage, "spec": spec.to_dict(), "inputs": run_inputs(spec)}
    folder.write_job_summary("4242", copy)
    retrained(upstream, other)
    assert not restore_summary(SimpleNamespace(job_id="4242"), folder, spec)
    assert "is stale (upstream changed" in capsys.readouterr().err and not folder.summary_path.exists()


def test_a_summary_from_before_inputs_were_recorded_stays_finished(tmp_path, monkeypatch, capsys):
    spec = small_spec(**ONE_EPOCH)
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.write_summary({"run_id": spec.run_id(), "final": {"loss": 1.0}})  # no inputs: unrecorded, unchanged
    monkeypatch.setattr(launching, "run_as_job", lambda *args: pytest.fail("a finished run was submitted"))
    assert launching.launch(write_spec(tmp_path, spec), folder.path, "local") == 0
    assert "already finished" in capsys.readouterr().err


# ---------------------------------------------------------------- n08: tables refuse a relabelled summary


@pytest.mark.parametrize("change", [{"seed": 7}, {"dataset": "digits"}, {"init": "elsewhere/checkpoint.pt"}], ids=str)
def test_tables_refuse_a_summary_whose_spec_is_another_runs(tmp_path, tiny_plan, change):
    table = tiny_plan.tables["T6"]
    for run_id in table.eval_ids():
        spec = tiny_plan.evaluations[run_id]
        folder = RunFolder(tmp_path / "results" / "runs" / run_id)
        folder.path.mkdir(parents=True)
        summary = {"run_id": run_id, "stage": spec.stage, "spec": spec.to_dict(), "top1": 50.0, "final": {}}
        folder.summary_path.write_text(json.dumps(summary))
    assert len(table_frame(table, tiny_plan, tmp_path)) == len(table.rows)
    relabelled = RunFolder(tmp_path / "results" / "runs" / sorted(table.eval_ids())[0])
    summary = relabelled.require_summary()
    summary["spec"].update(change)
    relabelled.summary_path.write_text(json.dumps(summary))
    with pytest.raises(MissingResultError, match=rf"{relabelled.summary_path}: its spec is run .*, not run"):
        table_frame(table, tiny_plan, tmp_path)
