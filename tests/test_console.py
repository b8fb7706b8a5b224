"""The console: quiet profiles (no shell commands echoed, the live progress display) and `normae progress`."""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from normae.cli.main import main
from normae.cli.progress import STALLED_AFTER_S, progress_report
from normae.paths import RUNS_DIR, RunFolder, readable_label
from normae.training.progress import progress_line

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "workflow" / "profiles"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
PRETRAIN = "fmnist-vit_micro-p2-mae-mr0.75-ep1-s0-c364a59a"
EVALUATION = "fashion_mnist-knn-from-fmnist-vit_micro-p2-mae-mr0.75-ep1-s0-c364a59a-k20-s0-e1c62ff4"
WAITING = "fmnist-vit_micro-p4-mae-mr0.75-ep1-s0-0badcafe"


def profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


@pytest.mark.parametrize("name", ["default", "slurm"])
def test_no_profile_echoes_shell_commands(name):
    assert not profile(name).get("printshellcmds"), name


def test_the_default_profile_shows_the_live_progress_display():
    """The workflow profile: Snakemake applies it on every invocation, under --profile slurm too."""
    assert profile("default")["logger"] == ["rich"]


@pytest.mark.slow  # Snakemake plans the tiny DAG: about 10 s
@pytest.mark.skipif(
    importlib.util.find_spec("snakemake_logger_plugin_rich") is None,
    reason="snakemake-logger-plugin-rich is not installed (pip install 'normae[workflow]')",
)
def test_a_dry_run_of_every_table_fits_on_a_screen(tmp_path):
    """It printed 1,281 lines with printshellcmds (and a real run 2,218), each job's command ~900 characters."""
    env = {**os.environ, "NORMAE_FASHION_MNIST": str(tmp_path)}  # a dry run reads no data
    done = subprocess.run([SNAKEMAKE, "-n"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "This was a dry-run" in output and "train run" in output, output  # the job stats table
    assert len(output.splitlines()) < 60 and "normae launch" not in output, output


def write_run(root: Path, run_id: str, log: str = "", seconds: float | None = None, finished=False) -> RunFolder:
    folder = RunFolder(root / RUNS_DIR / run_id)
    folder.path.mkdir(parents=True)
    (folder.path / RunFolder.LAUNCH_LOG).write_text(log)
    if seconds is not None:
        (folder.path / RunFolder.BENCHMARK).write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:01:40\t100\n")
    if finished:
        folder.summary_path.write_text("{}")
    return folder


def logged(epoch, step, per_step, steps_left) -> str:
    """A line as the training loop's plain reporter writes it (normae.training.progress)."""
    where = progress_line(epoch, 3, step, 64, per_step, steps_left)
    return f"[normae] {time.strftime('%Y-%m-%d %H:%M:%S')} {where} loss=0.912 lr=1.200e-04\n"


def test_progress_lists_done_running_and_an_eta(tmp_path):
    write_run(tmp_path, PRETRAIN, logged(1, 64, 1.0, 0), seconds=100.0, finished=True)
    write_run(tmp_path, EVALUATION, "starting\n" + logged(1, 10, 0.5, 200) + logged(1, 20, 0.5, 38) + "a warning\n")
    write_run(tmp_path, WAITING)
    report = progress_report(tmp_path, [PRETRAIN, EVALUATION, WAITING]).splitlines()
    # the waiting run takes the mean finished run's 100 s after the running run's own 19 s
    assert report[0] == (
        "runs: 1 of 3 done (33%), 1 running, 1 not started or stopped; "
        "about 0:01:59 left (a finished run took 0:01:40 on average)"
    )
    assert report[1:] == [f"  {readable_label(EVALUATION)}: epoch 1/3 step 20/64 eta 0:00:19 loss=0.912"]


def test_progress_reads_the_slurm_jobs_log_and_names_a_stalled_run(tmp_path):
    folder = write_run(tmp_path, EVALUATION, "submitted job 123\n")
    folder.submitit_dir.mkdir()
    job_log = folder.submitit_dir / "123_0_log.err"
    job_log.write_text(logged(2, 5, 2.0, 100))
    long_ago = time.time() - STALLED_AFTER_S - 60
    os.utime(job_log, (long_ago, long_ago))
    report = progress_report(tmp_path, [EVALUATION]).splitlines()
    assert report[0] == "runs: 0 of 1 done (0%), 0 running, 1 not started or stopped"
    assert (
        report[1].startswith("  stalled (0:16:00 without a line): ") and "epoch 2/3 step 5/64 eta 0:03:20" in report[1]
    )


def test_the_command_counts_the_planned_runs(tmp_path, capsys):
    assert main(["progress", "--root", str(tmp_path)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert " runs: 0 of " in line and "done (0%), 0 running" in line
