"""normae launch without a cluster: resources, the light launcher, submitit's local executor, re-attaching."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from normae.cluster import job as job_module
from normae.stages import pretrain as stages
from normae.spec import PretrainSpec
from normae.cluster.submitit_adapter import QueueWatcher, resources_from
from normae.training.loop import TrainingInterrupted, stop_on

from test_train import assert_same_run, small_spec, stop_at_call

# Runs the CLI in a fresh interpreter and reports, after it returns, whether torch or timm were
# imported and the peak resident memory (VmHWM: unlike ru_maxrss it does not inherit the forking
# pytest's peak): the launcher that waits on a job must stay light.
LAUNCHER = """
import json, re, sys
from normae.cli import main
status = main(sys.argv[1:])
heavy = sorted(name for name in ("torch", "timm") if name in sys.modules)
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print("LAUNCHER " + json.dumps({"status": status, "heavy": heavy, "max_rss_mb": peak_kb / 1024}))
sys.exit(status)
"""


def tiny_spec(**overrides) -> PretrainSpec:
    """The tiny pre-training the launcher tests submit (8 optimiser steps of vit_micro)."""
    settings = dict(
        dataset="generated", train_samples=128, model="vit_micro", img_size=28, patch_size=4, method="mae",
        epochs=2, warmup_epochs=1, batch_size=32, blr=1e-3, num_workers=0, checkpoint_minutes=0, log_every=1,
    )
    return PretrainSpec(**{**settings, **overrides})


def job_env() -> dict:
    # One thread per process: the same floating-point reductions in the job and in the reference run.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def launch_command(spec_path, out, launcher, resources=None, stage="pretrain") -> list[str]:
    command = [sys.executable, "-c", LAUNCHER, "launch", stage, "--spec", str(spec_path), "--out", str(out), "--launcher", launcher]
    return command + (["--slurm", json.dumps(resources)] if resources is not None else [])


def start_launcher(spec_path, out, launcher, resources=None, cwd=None) -> subprocess.Popen:
    return subprocess.Popen(
        launch_command(spec_path, out, launcher, resources), cwd=cwd, env=job_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(process: subprocess.Popen, timeout=240) -> tuple[int, dict, str]:
    """Exit status, the launcher's own report (torch imported? peak RSS) and everything it printed."""
    stdout, stderr = process.communicate(timeout=timeout)
    reports = [json.loads(line.split(" ", 1)[1]) for line in stdout.splitlines() if line.startswith("LAUNCHER ")]
    return process.returncode, (reports[0] if reports else {}), stdout + stderr


def wait_for_file(path: Path, timeout=60.0, condition=lambda text: True) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            if condition(text):
                return text
        time.sleep(0.2)
    raise AssertionError(f"{path} did not appear (or never satisfied the condition) within {timeout} s")


def write_spec(folder: Path, spec, name="spec.json") -> Path:
    path = folder / name
    path.write_text(spec.to_json())
    return path


# ---- resources and squeue, no processes ---------------------------------------------------------
def test_resources_defaults_and_unknown_keys():
    cpu = resources_from({"partition": "cpu", "timeout_min": 30})
    assert cpu["tasks_per_node"] == 1 and cpu["partition"] == "cpu" and cpu["timeout_min"] == 30
    assert resources_from({"gpus_per_node": 8})["tasks_per_node"] == 8  # one task per GPU
    assert resources_from({"gpus_per_node": 8, "tasks_per_node": 2})["tasks_per_node"] == 2
    with pytest.raises(ValueError, match="partiton"):
        resources_from({"partiton": "gpu"})


def test_queue_watcher_reads_squeue_and_takes_a_vanished_job_as_over():
    watcher = QueueWatcher(delay_s=60)
    watcher.use_sacct = False
    for job_id in ("11", "12", "13", "14"):
        watcher.register_job(job_id)
    info = watcher.read_info(b"11|RUNNING|vm\n12|REQUEUE_HOLD|\n13|CANCELLED|vm\n")
    watcher._info_dict.update(info)
    assert not watcher.is_done("11", mode="cache")
    assert not watcher.is_done("12", mode="cache")  # held after a requeue: still to come
    assert watcher.is_done("13", mode="cache")
    assert info["14"]["State"] == "GONE" and watcher.is_done("14", mode="cache")


def test_bad_slurm_json_is_a_clear_error(tmp_path):
    spec_path = write_spec(tmp_path, tiny_spec())
    result = subprocess.run(
        launch_command(spec_path, tmp_path / "run", "local", None) + ["--slurm", "{partition: gpu"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "--slurm is not JSON" in result.stderr
    result = subprocess.run(launch_command(spec_path, tmp_path / "run", "local", {"gpu": 1}), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown SLURM resource keys ['gpu']" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_finished_run_is_never_submitted_and_the_launcher_stays_light(tmp_path):
    spec_path = write_spec(tmp_path, tiny_spec())
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"final": {"loss": 0.5}, "step_time_median_s": 0.1}))
    for launcher in ("local", "slurm"):
        status, report, output = finish(start_launcher(spec_path, run, launcher, {"partition": "nowhere"}))
        assert status == 0, output
        assert report["heavy"] == [] and report["max_rss_mb"] < 100, report
        assert "already finished" in output and '"loss": 0.5' in output
    assert not (run / "job.json").exists() and not (run / "slurm").exists()


# ---- the job side's signal handling ----------------------------------------------------------------
def test_stop_on_makes_usr2_stop_after_the_checkpoint_and_resume_is_exact(tmp_path, monkeypatch):
    spec = small_spec()
    stages.run_pretrain(spec, tmp_path / "straight")
    calls = stop_at_call(monkeypatch, 5, lambda: os.kill(os.getpid(), signal.SIGUSR2))
    with stop_on(signal.SIGUSR2), pytest.raises(TrainingInterrupted) as stopped:
        stages.run_pretrain(spec, tmp_path / "stopped")
    assert stopped.value.signal == signal.SIGUSR2 and "stopped by SIGUSR2" in str(stopped.value)
    assert not (tmp_path / "stopped" / "summary.json").exists()
    calls["n"] = -10**9
    stages.run_pretrain(spec, tmp_path / "stopped", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")


class FakeJobEnvironment:
    job_id, global_rank = "7", 0

    def __init__(self):
        self.requeued = []

    def _requeue(self, countdown):
        self.requeued.append(countdown)


def test_a_stopped_job_requeues_itself_within_its_bound(monkeypatch):
    job = job_module.StageJob("pretrain", "spec.json", "run", max_requeues=2)
    usr2 = TrainingInterrupted("stopped by SIGUSR2", signal.SIGUSR2)
    env = FakeJobEnvironment()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with pytest.raises(SystemExit):
        job.end_attempt(env, usr2)
    assert env.requeued == [1]
    with pytest.raises(SystemExit) as ended:
        job.end_attempt(env, TrainingInterrupted("stopped by SIGTERM", signal.SIGTERM))
    assert ended.value.code == 143 and env.requeued == [1]  # the cluster decides after a SIGTERM
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    with pytest.raises(job_module.RequeueLimitError, match="max_requeues=2"):
        job.end_attempt(env, usr2)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "3")
    monkeypatch.setattr(job_module.submitit, "JobEnvironment", FakeJobEnvironment)
    with pytest.raises(job_module.RequeueLimitError, match="requeued 3 times"):
        job()


# ---- submitit's local executor, end to end ---------------------------------------------------------
@pytest.mark.slow
def test_local_launcher_runs_the_job_and_a_second_launch_reattaches(tmp_path):
    spec_path = write_spec(tmp_path, tiny_spec())
    run = tmp_path / "run"
    first = start_launcher(spec_path, run, "local", {"timeout_min": 10})
    record = json.loads(wait_for_file(run / "job.json"))
    second = start_launcher(spec_path, run, "local", {"timeout_min": 10})
    (status_1, report_1, output_1), (status_2, _, output_2) = finish(first), finish(second)
    assert status_1 == 0, output_1
    assert status_2 == 0, output_2
    assert f"re-attached to local job {record['job_id']}" in output_2, output_2
    assert json.loads((run / "job.json").read_text())["submissions"] == [record["job_id"]]
    assert report_1["heavy"] == [] and report_1["max_rss_mb"] < 100, report_1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["optimizer_steps"] == 8 and summary["world_size"] == 1
    assert (run / "slurm" / f"{record['job_id']}_0_log.err").exists()

    # Snakemake's --rerun-incomplete deletes summary.json of a run that finished while it was down:
    # the next launch takes it back from the job's result instead of submitting again.
    expected = (run / "summary.json").read_text()
    (run / "summary.json").unlink()
    status, _, output = finish(start_launcher(spec_path, run, "local", {"timeout_min": 10}))
    assert status == 0 and "summary.json restored" in output, output
    assert (run / "summary.json").read_text() == expected
    assert json.loads((run / "job.json").read_text())["submissions"] == [record["job_id"]]


@pytest.mark.slow
def test_local_launcher_reports_a_failed_job_with_its_log(tmp_path):
    spec = tiny_spec(dataset="fashion_mnist", img_size=None, data_root=str(tmp_path / "no-such-folder"))
    spec_path = write_spec(tmp_path, spec)
    status, report, output = finish(start_launcher(spec_path, tmp_path / "run", "local", {"timeout_min": 10}))
    assert status == 1, output
    assert "failed" in output and "no-such-folder" in output
    job_id = json.loads((tmp_path / "run" / "job.json").read_text())["job_id"]
    assert f"{tmp_path / 'run' / 'slurm' / job_id}_0_log.err" in output
    assert report["heavy"] == []
