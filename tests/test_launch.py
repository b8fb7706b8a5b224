"""normae launch without a cluster: resources, the light launcher, submitit's local executor, re-attaching."""

import json
import os
import signal
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from normae.cluster import job as job_module
from normae.cluster.resources import RESOURCE_DEFAULTS, SBATCH_OPTION_PATTERN, resources_from
from normae.cluster.submitit_adapter import QueueWatcher
from normae.errors import ConfigError
from normae.stages import pretrain as stages
from normae.training.signals import StopSignals, TrainingInterrupted

from helpers import (
    assert_same_run,
    finish,
    launch_command,
    small_spec,
    start_launcher,
    stop_at_call,
    tiny_spec,
    wait_for_file,
    write_spec,
)


# ---- resources and squeue, no processes ---------------------------------------------------------
def test_resources_defaults_and_unknown_keys():
    cpu = resources_from({"partition": "cpu", "timeout_min": 30})
    assert cpu["tasks_per_node"] == 1 and cpu["partition"] == "cpu" and cpu["timeout_min"] == 30
    assert resources_from({"gpus_per_node": 8})["tasks_per_node"] == 8  # one task per GPU
    assert resources_from({"gpus_per_node": 8, "tasks_per_node": 2})["tasks_per_node"] == 2
    with pytest.raises(ValueError, match="partiton"):
        resources_from({"partiton": "gpu"})


def test_resource_keys_are_the_workflow_schemas():
    schema = yaml.safe_load((Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    assert set(schema["$defs"]["resources"]["properties"]) == set(RESOURCE_DEFAULTS)


INJECTIONS = [
    {"additional_parameters": {"comment=a\ntouch X\n#": "1"}},  # n106: a key that ends the #SBATCH line
    {"additional_parameters": {"comment": "a\ntouch X"}},  # n105: a value
    {"additional_parameters": {"comment": "a\rb"}},
    {"additional_parameters": {"comment": ["ok", "a\u0000b"]}},  # nested
    {"additional_parameters": {"comment\n": "1"}},  # a key a $-anchored pattern would let through
    {"partition": "gpu\n#SBATCH --requeue"},
]


@pytest.mark.parametrize("given", INJECTIONS)
def test_a_resource_that_would_add_lines_to_the_sbatch_script_is_refused(given):
    with pytest.raises(ConfigError) as error:
        resources_from(given)
    assert "\n" not in str(error.value) and "SLURM" in str(error.value)


def test_sbatch_options_on_one_line_are_accepted():
    given = {"partition": "gpu", "additional_parameters": {"exclusive": True, "reservation": "x-1", "gres_flags": 1}}
    assert resources_from(given)["additional_parameters"] == given["additional_parameters"]


@pytest.mark.parametrize("given", INJECTIONS)
def test_the_workflow_schema_refuses_what_the_launcher_refuses(given):
    """The workflow validates its config (slurm: per group) before any job is planned."""
    schema_path = Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    config = {"scale": "tiny", "launcher": "slurm", "config_dir": "config", "slurm": {"pretrain": given}}
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert not validator.is_valid(config)
    config["slurm"]["pretrain"] = {"partition": "gpu", "additional_parameters": {"exclusive": True, "x-y": "1 2"}}
    validator.validate(config)
    pattern = schema["$defs"]["resources"]["properties"]["additional_parameters"]["propertyNames"]["pattern"]
    assert pattern == SBATCH_OPTION_PATTERN


def test_an_injected_slurm_option_is_one_line_and_writes_nothing(tmp_path):
    """n106 / n105: refused before submitit writes its .submission_file_*.sh and .pkl into slurm/."""
    spec_path = write_spec(tmp_path, tiny_spec())
    command = launch_command(spec_path, tmp_path / "run", "slurm", INJECTIONS[0])
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "is not an sbatch option name" in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "X").exists()


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
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--slurm is not JSON" in result.stderr
    result = subprocess.run(
        launch_command(spec_path, tmp_path / "run", "local", {"gpu": 1}), capture_output=True, text=True, timeout=60
    )
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
@pytest.mark.slow
def test_job_signals_make_usr2_stop_after_the_checkpoint_and_resume_is_exact(tmp_path, monkeypatch):
    spec = small_spec()
    stages.run_pretrain(spec, tmp_path / "straight")
    calls = stop_at_call(monkeypatch, 5, lambda: os.kill(os.getpid(), signal.SIGUSR2))
    job_signals = StopSignals(
        stop=frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGUSR2})
    )  # as StageJob passes them
    with pytest.raises(TrainingInterrupted) as stopped:
        stages.run_pretrain(spec, tmp_path / "stopped", signals=job_signals)
    assert stopped.value.signal == signal.SIGUSR2 and "stopped by SIGUSR2" in str(stopped.value)
    assert not (tmp_path / "stopped" / "summary.json").exists()
    calls["n"] = -(10**9)
    stages.run_pretrain(spec, tmp_path / "stopped", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")


class FakeJobEnvironment:
    job_id, global_rank = "7", 0

    def __init__(self):
        self.requeued = []

    def _requeue(self, countdown):
        self.requeued.append(countdown)


def test_a_stopped_job_requeues_itself_within_its_bound(monkeypatch):
    job = job_module.StageJob("spec.json", "run", max_requeues=2)
    usr2 = TrainingInterrupted("stopped by SIGUSR2", signal.SIGUSR2)
    env = FakeJobEnvironment()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with pytest.raises(SystemExit):
        job.end_attempt(env, usr2)
    assert env.requeued == [1]
    with pytest.raises(SystemExit) as ended:
        job.end_attempt(env, TrainingInterrupted("stopped by SIGTERM", signal.SIGTERM))
    assert ended.value.code == 143 and env.requeued == [1]  # the cluster decides after a SIGTERM
    with pytest.raises(SystemExit) as ended:
        job.end_attempt(env, TrainingInterrupted("stopped by SIGINT", signal.SIGINT))
    assert ended.value.code == 130 and env.requeued == [1]  # and after a SIGINT
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
