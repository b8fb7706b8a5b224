"""Fault cases about run folders, the launcher and the workflow (issue 11: Medium 5, 6, 7 and Low 10).

- One process trains in a run folder at a time: a second one (or a second torchrun group, or a job
  whose folder is busy) gets a one-line error naming the folder; under DDP only rank 0 locks it.
- The launcher never unpickles anything from a run folder: a summary comes back only from the
  job's own JSON copy, and only if it is this spec's; job ids from job.json are checked.
- ``config_dir`` cannot carry shell code into a rule, and a path with a space works.
- Corrupt JSON files are errors that name them, in every command that reads them; a corrupt
  summary.json is no finished run: it is set aside and the run goes on.
"""

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from normae.cli.main import main
from normae.cluster.launch import launch
from normae.cluster.submitit_adapter import restore_summary
from normae.errors import RunFolderError
from normae.experiments import plan as normae_plan
from normae.paths import RunFolder, checked_job_id
from normae.stages import pretrain, transfer

from helpers import (
    NORMAE,
    assert_one_line_error,
    downstream_spec,
    finish,
    normae,
    small_spec,
    start_launcher,
    tiny_spec,
    wait_for_file,
    write_spec,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# ---- Medium 5: one process trains in a run folder --------------------------------------------------
def test_the_training_lock_refuses_a_second_holder_and_is_released(tmp_path):
    folder, other = RunFolder(tmp_path / "run"), RunFolder(tmp_path / "other")
    busy = rf"{re.escape(str(folder.path))} is in use: pid {os.getpid()} on "
    with folder.training_lock():
        with pytest.raises(RunFolderError, match=busy), folder.training_lock():
            pass
        with other.training_lock():  # one lock per folder
            pass
    with pytest.raises(KeyError), folder.training_lock():  # released when the block fails, too
        raise KeyError("boom")
    with folder.training_lock():
        pass
    assert folder.training_lock_path.name == RunFolder.TRAINING_LOCK


SMALL_EVALUATION = dict(img_size=16, train_samples=16, eval_samples=16, batch_size=8)


@pytest.mark.parametrize("stage", ["pretrain", "finetune", "linprobe"])
def test_every_stage_refuses_a_folder_another_process_trains_in(tmp_path, stage):
    spec = small_spec(epochs=1, warmup_epochs=0) if stage == "pretrain" else downstream_spec(stage, **SMALL_EVALUATION)
    run = pretrain.run_pretrain if stage == "pretrain" else transfer.run_transfer
    folder = RunFolder(tmp_path / "run")
    with folder.training_lock(), pytest.raises(RunFolderError, match=f"{re.escape(str(folder.path))} is in use"):
        run(spec, folder.path)
    assert not folder.spec_path.exists() and not folder.checkpoint_path.exists() and not folder.metrics_path.exists()
    run(spec, folder.path)  # once the other process is gone
    assert folder.is_finished()


@pytest.mark.slow
def test_a_second_pretrain_on_the_same_folder_is_refused_and_the_first_is_untouched(tmp_path):
    """The issue's case: `normae pretrain --out R`, then `normae pretrain --out R --resume` while it trains."""
    spec_path = write_spec(tmp_path, small_spec(train_samples=256, epochs=1, warmup_epochs=0))  # 32 steps
    run = tmp_path / "run"
    first = subprocess.Popen(
        NORMAE + ["pretrain", "--spec", str(spec_path), "--out", str(run)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_file(run / "metrics.jsonl", 120, lambda text: '"step"' in text)
        os.kill(first.pid, signal.SIGSTOP)  # it holds the folder, mid-run, for as long as the second one tries
        try:
            second = normae(["pretrain", "--spec", spec_path, "--out", run, "--resume"])
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert_one_line_error(second, "pretrain", f"{run} is in use", f"pid {first.pid} on", RunFolder.TRAINING_LOCK)
        _, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    summary = json.loads((run / "summary.json").read_text())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [record["step"] for record in records if record["kind"] == "step"]
    assert steps == list(range(1, summary["optimizer_steps"] + 1)) == list(range(1, 33))  # no second writer
    assert [record["kind"] for record in records].count("epoch") == 1


@pytest.mark.slow
def test_under_torchrun_a_busy_folder_stops_every_rank_at_once(tmp_path):
    """Only rank 0 locks; it tells the other ranks, so none waits in a collective for it (gloo's 30 minutes)."""
    spec_path = write_spec(tmp_path, small_spec(epochs=1, warmup_epochs=0))
    folder = RunFolder(tmp_path / "run")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "normae.cli"]
    started = time.monotonic()
    with folder.training_lock():
        result = subprocess.run(
            command + ["pretrain", "--spec", str(spec_path), "--out", str(folder.path)],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode != 0
    assert f"{folder.path} is in use" in result.stderr, result.stderr
    assert "rank 0 could not take the run folder" in result.stderr, result.stderr  # rank 1 followed rank 0
    assert time.monotonic() - started < 200
    assert not folder.spec_path.exists() and not folder.metrics_path.exists()


@pytest.mark.slow
def test_the_launcher_holds_no_training_lock_the_jobs_rank_0_does(tmp_path):
    """A launcher gets through to submitting while another process trains in the folder; the job's
    rank 0 is the one refused, and the launcher reports it with the job's log."""
    spec_path = write_spec(tmp_path, tiny_spec())
    folder = RunFolder(tmp_path / "run")
    with folder.training_lock():
        status, report, output = finish(start_launcher(spec_path, folder.path, "local", {"timeout_min": 10}))
    assert status == 1 and "failed" in output, output
    assert f"{folder.path} is in use" in output and "_0_log.err" in output, output
    assert report["heavy"] == []
    assert not folder.is_finished() and folder.read_job_record()["launcher"] == "local"


# ---- Medium 6: no pickle from a run folder, checked job ids ---------------------------------------
class Payload:
    """Unpickling this creates the folder ``marker``: an os-level call any unpickler can import."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_the_payload_would_run_if_unpickled(tmp_path):
    pickle.loads(pickle.dumps(Payload(tmp_path / "control")))
    assert (tmp_path / "control").is_dir()


@pytest.mark.slow
def test_the_launcher_restores_only_the_jobs_json_summary_and_never_runs_a_pickle(tmp_path):
    spec_path = write_spec(tmp_path, tiny_spec())
    folder = RunFolder(tmp_path / "run")
    status, _, output = finish(start_launcher(spec_path, folder.path, "local", {"timeout_min": 10}))
    assert status == 0, output
    job_id = folder.read_job_record()["job_id"]
    expected = folder.summary_path.read_text()
    summary = json.loads(expected)
    assert summary["step_time_median_s"] > 0 and summary["optimizer_steps"] == 8
    assert json.loads(folder.job_summary_path(job_id).read_text()) == summary  # rank 0's copy, as JSON

    # Snakemake's --rerun-incomplete deleted summary.json; someone planted a pickle as the job's result.
    folder.summary_path.unlink()
    marker = tmp_path / "EXECUTED"
    result_pickle = folder.submitit_dir / f"{job_id}_0_result.pkl"
    assert result_pickle.exists()
    result_pickle.write_bytes(pickle.dumps(Payload(marker)))
    status, _, output = finish(start_launcher(spec_path, folder.path, "local", {"timeout_min": 10}))
    assert status == 0 and f"summary.json restored from {folder.job_summary_path(job_id)}" in output, output
    assert folder.summary_path.read_text() == expected  # every field, step_time_median_s included
    assert not marker.exists()

    # A corrupt summary.json is no finished run: set aside, then restored from the job's copy.
    folder.summary_path.write_text('{"final": {"loss": 0.')
    status, _, output = finish(start_launcher(spec_path, folder.path, "local", {"timeout_min": 10}))
    assert status == 0 and f"moved it to {folder.corrupt_summary_path}" in output, output
    assert folder.corrupt_summary_path.read_text() == '{"final": {"loss": 0.'
    assert folder.summary_path.read_text() == expected and not marker.exists()
    assert folder.read_job_record()["submissions"] == [job_id]


def test_restore_summary_takes_only_a_summary_of_this_spec(tmp_path):
    spec = tiny_spec()
    folder = RunFolder(tmp_path / "run")
    folder.write_spec(spec)
    job = SimpleNamespace(job_id="4242")
    assert not restore_summary(job, folder, spec)  # no copy
    good = {"run_id": spec.run_id(), "stage": "pretrain", "spec": spec.to_dict(), "step_time_median_s": 0.25}
    other = tiny_spec(seed=3)
    for wrong in (
        [good],
        {**good, "run_id": other.run_id()},
        {**good, "spec": other.to_dict()},
        {**good, "spec": "not a spec"},
        {**good, "stage": "finetune"},
    ):
        folder.write_job_summary("4242", wrong)
        assert not restore_summary(job, folder, spec), wrong
        assert not folder.summary_path.exists()
    folder.job_summary_path("4242").write_text("{broken")
    assert not restore_summary(job, folder, spec)
    folder.write_job_summary("4242", good)
    assert restore_summary(job, folder, spec)
    assert folder.require_summary() == good


@pytest.mark.parametrize("job_id", ["../../../tmp/x", "1; touch INJECTED", "12_ab", "", "1/2", True, 1.5, None])
def test_a_job_id_from_job_json_must_be_a_job_id(tmp_path, job_id):
    spec_path = write_spec(tmp_path, tiny_spec())
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.job_record_path.write_text(
        json.dumps({"launcher": "local", "job_id": job_id, "tasks": 1, "submissions": [job_id]})
    )
    with pytest.raises(RunFolderError, match="job.json: job id .* is not a job id"):
        launch(spec_path, folder.path, launcher="local")
    assert not folder.submitit_dir.exists() or not any(folder.submitit_dir.glob("*.pkl"))
    assert not (tmp_path / "INJECTED").exists()


def test_job_json_is_checked_field_by_field(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    for record in (
        [1],
        {"launcher": "local", "job_id": "12", "tasks": "3"},
        {"launcher": "pbs", "job_id": "12", "tasks": 1},
        {"launcher": "slurm", "job_id": "12", "tasks": 0},
        {"submissions": "12"},
    ):
        folder.job_record_path.write_text(json.dumps(record))
        with pytest.raises(RunFolderError, match="job.json"):
            folder.read_job_record()
    assert [checked_job_id(value, "x") for value in ("123", "123_4", 77)] == ["123", "123_4", "77"]
    spec_path = write_spec(tmp_path, tiny_spec())
    folder.job_record_path.write_text(json.dumps({"launcher": "slurm", "job_id": "../x", "tasks": 1}))
    result = normae(["launch", "--spec", spec_path, "--out", folder.path, "--launcher", "local"])
    assert_one_line_error(result, "launch", str(folder.job_record_path), "'../x' is not a job id")


# ---- Medium 7: config_dir and the rules' shell commands --------------------------------------------
def snakemake(workdir: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    command = [str(BIN / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir)]
    command += ["--workflow-profile", "none", "--cores", "1", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_every_value_in_a_rules_shell_command_is_quoted():
    """Wildcards and inputs reach the shell through ``:q``; params are built with shlex (common.smk)."""
    for rule_file in (REPO / "workflow" / "rules").glob("*.smk"):
        text = rule_file.read_text()
        unquoted = re.findall(r"\{(?:wildcards|input|output|log)(?:\.\w+)?\}", text)
        assert not unquoted, (rule_file.name, unquoted)


def test_shell_code_in_config_dir_is_refused_by_the_schema(tmp_path):
    workdir = tmp_path / "work"
    shutil.copytree(REPO / "config", workdir / "config")
    injected = "config;touch INJECTED;true"
    shutil.copytree(REPO / "config", workdir / injected)  # so that the plan itself would load
    result = snakemake(workdir, "-f", "results/tables/figure3.md", "--config", f"config_dir={injected}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config_dir" in output and injected in output, output
    assert not list(tmp_path.rglob("INJECTED")) and not (REPO / "INJECTED").exists()
    assert not (workdir / "results").exists()


@pytest.mark.slow
def test_a_config_dir_with_a_space_reaches_the_commands_as_one_path(tmp_path):
    """A real job of the train_run rule: `normae spec` reads the plan from `my config/`; `normae launch`
    is a stand-in that records its arguments and writes the summary."""
    workdir = tmp_path / "work dir"
    config_dir = workdir / "my config"
    shutil.copytree(REPO / "config", workdir / "config")  # config.yaml, the defaults
    shutil.copytree(REPO / "config", config_dir)
    scale_file = config_dir / "scales" / "tiny.yaml"
    scale = yaml.safe_load(scale_file.read_text())
    scale["pretrain"]["train_samples"] = 96  # so that the run's spec shows which config_dir was read
    scale_file.write_text(yaml.safe_dump(scale))
    stub_bin = tmp_path / "bin"
    stub_bin.mkdir()
    calls = tmp_path / "launch-calls.jsonl"
    (stub_bin / "normae").write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "if sys.argv[1] != 'launch':\n"
        f"    os.execv({sys.executable!r}, [{sys.executable!r}, '-m', 'normae.cli', *sys.argv[1:]])\n"
        f"with open({str(calls)!r}, 'a') as log:\n"
        "    log.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "out = Path(sys.argv[sys.argv.index('--out') + 1])\n"
        "(out / 'summary.json').write_text('{}')\n"
    )
    (stub_bin / "normae").chmod(0o755)
    tiny = normae_plan.expand(
        normae_plan.load_experiments(config_dir / "experiments.yaml"),
        normae_plan.load_scale("tiny", config_dir),
        normae_plan.read_reported(config_dir / "reported.csv"),
    )
    run_id = sorted(tiny.pretrain)[0]
    target = f"results/runs/{run_id}/summary.json"
    env = {**os.environ, "PATH": f"{stub_bin}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = snakemake(workdir, target, "--config", f"config_dir={config_dir}", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = RunFolder(workdir / "results" / "runs" / run_id)
    assert json.loads(folder.spec_path.read_text()) == json.loads(tiny.spec(run_id).to_json())
    assert tiny.spec(run_id).train_samples == 96
    [launched] = [json.loads(line) for line in calls.read_text().splitlines()]
    assert launched[launched.index("--spec") + 1] == str(Path("results") / "runs" / run_id / "spec.json")


# ---- Low 10: corrupt files name themselves; a corrupt summary is no finished run ---------------------
def finished_by_hand(folder: RunFolder, seed: int = 0) -> None:
    """A finished-looking pre-training run folder, without training."""
    spec = small_spec(seed=seed)
    folder.path.mkdir(parents=True)
    folder.write_spec(spec)
    folder.metrics_path.write_text(
        json.dumps({"kind": "step", "step": 1, "loss": 1.0})
        + "\n"
        + json.dumps({"kind": "epoch", "epoch": 1, "loss": 0.9})
        + "\n"
    )
    folder.write_summary(
        {
            "run_id": spec.run_id(),
            "stage": "pretrain",
            "spec": spec.to_dict(),
            "final": {"loss": 0.9},
            "epochs": 1,
            "step_time_median_s": 0.01,
        }
    )


CORRUPTIONS = {"invalid JSON": "{not json", "binary": "\udcff\udcfe", "not an object": "[1, 2]"}


def corrupt(path: Path, how: str) -> None:
    text = CORRUPTIONS[how]
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("how", list(CORRUPTIONS))
@pytest.mark.parametrize(
    "command, name",
    [
        ("compare", RunFolder.SPEC),
        ("compare", RunFolder.METRICS),
        ("compare", RunFolder.SUMMARY),
        ("summarize", RunFolder.SUMMARY),
        ("launch", RunFolder.SPEC),
        ("launch --spec", RunFolder.SPEC),
        ("tables", RunFolder.SUMMARY),
    ],
)
def test_a_corrupt_file_is_a_one_line_error_that_names_it(tmp_path, command, name, how, tiny_plan):
    if command == "tables":
        table = tiny_plan.tables["T3"]
        broken = [RunFolder(tmp_path / "results" / "runs" / run_id).summary_path for run_id in table.eval_ids()]
        for path in broken:
            path.parent.mkdir(parents=True)
            corrupt(path, how)
        args = ["tables", table.file, "--root", tmp_path, "--out", tmp_path / "tables"]
    else:
        a, b = RunFolder(tmp_path / "a"), RunFolder(tmp_path / "b")
        finished_by_hand(a)
        finished_by_hand(b, seed=1)
        broken = [b.path / name]
        corrupt(broken[0], how)
        if command == "compare":
            args = ["compare", a.path, b.path]
        elif command == "summarize":
            args = ["summarize", a.path, b.path]
        elif command == "launch":
            args = ["launch", "--spec", a.spec_path, "--out", b.path, "--launcher", "slurm"]
        else:
            args = ["launch", "--spec", broken[0], "--out", tmp_path / "c", "--launcher", "slurm"]
    result = normae(args)
    assert_one_line_error(result, args[0])
    assert any(str(path) in result.stderr for path in broken), result.stderr


def test_a_corrupt_summary_is_set_aside_and_the_stage_runs(tmp_path, capsys):
    spec = small_spec(epochs=1, warmup_epochs=0)
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.write_spec(spec)
    folder.summary_path.write_text('{"final": {"lo')  # a summary cut short
    assert not folder.is_finished() and folder.finished_summary() is None
    summary = pretrain.run_pretrain(spec, folder.path)
    assert folder.require_summary() == json.loads(json.dumps(summary))
    assert folder.corrupt_summary_path.read_text() == '{"final": {"lo'
    assert f"moved it to {folder.corrupt_summary_path}" in capsys.readouterr().err


def test_launch_sets_a_corrupt_summary_aside_before_deciding(tmp_path):
    """`normae launch` (any launcher) does not answer with a corrupt summary.json: it goes on with the run."""
    spec_path = write_spec(tmp_path, small_spec(epochs=1, warmup_epochs=0))
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.summary_path.write_text("\x00\x00")
    assert launch(spec_path, folder.path, launcher="inprocess") == 0
    assert folder.is_finished() and folder.corrupt_summary_path.read_text() == "\x00\x00"


def test_a_start_that_fails_before_the_run_writes_anything_leaves_nothing_behind(tmp_path):
    """#22: a refused start left an empty run folder (and its .training.lock) behind."""
    fresh = RunFolder(tmp_path / "made" / "by" / "run")
    with pytest.raises(KeyError), fresh.training_lock():
        assert fresh.training_lock_path.exists()
        raise KeyError("the data is not there")
    assert not (tmp_path / "made").exists()  # the folders the lock created went with it
    workflow = RunFolder(tmp_path / "workflow_run")  # Snakemake made it, for launch.log
    workflow.path.mkdir()
    (workflow.path / RunFolder.LAUNCH_LOG).write_text("log\n")
    with pytest.raises(KeyError), workflow.training_lock():
        raise KeyError("the data is not there")
    assert sorted(path.name for path in workflow.path.iterdir()) == [RunFolder.LAUNCH_LOG]
    with fresh.training_lock():  # a run that wrote its spec keeps its folder and lock file
        fresh.write_spec(small_spec())
    assert fresh.spec_path.exists() and fresh.training_lock_path.exists()


def test_a_failed_pretrain_from_another_directory_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["pretrain", "--dataset", "imagenet1k", "--data-root", str(tmp_path / "nowhere"), "--out", "runs/a"]
    assert main(args) == 2
    assert list(tmp_path.iterdir()) == []
