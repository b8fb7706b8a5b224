"""Faults met while a run trains, as a user (or SLURM) meets them through the ``normae`` command line.

Issue 11's runtime cases: a stop signal sent to the whole process group while DataLoader workers
run (SLURM preemption, scancel, requeue), one-line errors instead of tracebacks (a file as --out,
checkpoints that cannot be used, bad table inputs, a full disk, an unreadable image in a worker),
and leftovers (temporary files of killed writes, metrics.jsonl cut on resume without a temporary
file, summaries the tables must refuse). Each case runs the command line in a subprocess.
"""

import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from normae.paths import RunFolder
from normae.spec import FinetuneSpec
from normae.training.checkpoint import load_checkpoint
from normae.training.signals import StopSignals

from helpers import NORMAE, assert_one_line_error, assert_same_run, job_env, normae, small_spec

# Runs the CLI with one fault planted first: ``python -c DRIVER <fault> <n> <normae arguments...>``.
#   kill-at-step N      the N-th training step ends the process as kill -9 would (exit 137, no cleanup)
#   kill-before-rename NAME   the process ends so while an atomic write of NAME is complete but not renamed
#   full-checkpoint N   every checkpoint write after the N-th finds the disk full (after writing part of it)
#   full-metrics N      every metrics.jsonl append after the N-th finds the disk full (after half a line)
#   full-fsync N        every atomic write after the N-th finds the disk full
#   full-events N       every TensorBoard event record written after the N-th finds the disk full (writer thread)
DRIVER = """
import errno, os, pathlib, sys
import torch
from normae.cli import main

fault, count, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
calls = {"n": 0}

def disk_full():
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

if fault == "kill-at-step":
    from normae.stages import pretrain as stages
    real_step = stages.pretrain_step
    def step(model, batch):
        calls["n"] += 1
        if calls["n"] == int(count):
            os._exit(137)
        return real_step(model, batch)
    stages.pretrain_step = step
elif fault == "kill-before-rename":
    real_fsync = os.fsync
    def fsync(fd):
        real_fsync(fd)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith("." + count + "."):
            os._exit(137)
    os.fsync = fsync
elif fault == "full-checkpoint":
    real_save = torch.save
    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > int(count):
            f.write(b"PK partial checkpoint")
            disk_full()
        return real_save(obj, f, *args, **kwargs)
    torch.save = save
elif fault == "full-metrics":
    real_open = pathlib.Path.open
    class Full:
        def __init__(self, handle):
            self.handle = handle
        def write(self, text):
            self.handle.write(text[: len(text) // 2])
            self.handle.flush()
            disk_full()
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.handle.close()
    def open_(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        if self.name == "metrics.jsonl" and "a" in mode:
            calls["n"] += 1
            if calls["n"] > int(count):
                return Full(handle)
        return handle
    pathlib.Path.open = open_
elif fault == "full-events":
    from tensorboard.summary.writer import record_writer
    real_write = record_writer.RecordWriter.write
    def write(self, data):
        calls["n"] += 1
        if calls["n"] > int(count):
            disk_full()
        return real_write(self, data)
    record_writer.RecordWriter.write = write
elif fault == "full-fsync":
    real_fsync = os.fsync
    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > int(count):
            disk_full()
        real_fsync(fd)
    os.fsync = fsync
else:
    raise SystemExit(f"unknown fault {fault}")
sys.exit(main(argv))
"""


def with_fault(fault: str, count: str) -> list[str]:
    """The command that runs ``normae`` with ``fault`` planted (``helpers.normae``'s ``entry``)."""
    return [sys.executable, "-c", DRIVER, fault, count]


def pretrain_args(spec_path: Path, out: str, *extra: str) -> list[str]:
    return ["pretrain", "--spec", str(spec_path), "--out", out, *extra]


def tiny_run_spec(tmp_path: Path, **overrides) -> Path:
    """A spec.json of a 2-epoch vit_micro pre-training on generated 16 px images (8 steps an epoch)."""
    path = tmp_path / "spec.json"
    path.write_text(small_spec(**overrides).to_json())
    return path


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted run of ``tiny_run_spec``: what every interrupted and resumed run must equal."""
    root = tmp_path_factory.mktemp("straight")
    result = normae(pretrain_args(tiny_run_spec(root), "run"), root)
    assert result.returncode == 0, result.stderr
    return root / "run"


def group_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` (the run and its DataLoader workers)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def start_in_own_group(args, cwd) -> subprocess.Popen:
    """``setsid normae ...``: the run leads its own process group, as a SLURM job step does."""
    return subprocess.Popen(
        NORMAE + args,
        cwd=cwd,
        env=job_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_group_when(process: subprocess.Popen, metrics: Path, ready, timeout=600.0) -> list[int]:
    """SIGTERM to the whole group once ``ready(metrics lines, group members)``; returns the members then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        members = group_members(process.pid)
        if ready(lines, members):
            os.killpg(process.pid, signal.SIGTERM)
            return members
        time.sleep(0.01)
    raise AssertionError(f"the run ended or stalled before the signal was due:\n{process.communicate()[1]}")


# ---------------------------------------------------------------- High 2: a group SIGTERM with workers


@pytest.mark.slow
def test_group_sigterm_with_dataloader_workers_checkpoints_and_resume_equals_uninterrupted(tmp_path):
    spec = tiny_run_spec(tmp_path, train_samples=256, num_workers=2)  # 32 steps an epoch
    process = start_in_own_group(pretrain_args(spec, "stopped"), tmp_path)

    def training(lines, members) -> bool:  # 4 steps done, the run and its 2 workers in the group
        return len(lines) >= 4 and len(members) >= 3

    kill_group_when(process, tmp_path / "stopped" / "metrics.jsonl", training)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 143, stderr
    assert "killed by signal" not in stderr and "stopped by SIGTERM" in stderr, stderr
    state = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["loop"]
    assert state["epoch"] == 0 and 4 <= state["optimizer_steps"] < 32
    assert group_members(process.pid) == [], "a worker outlived the run"

    resumed = normae(pretrain_args(spec, "stopped", "--resume"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert normae(pretrain_args(spec, "straight"), tmp_path).returncode == 0
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")


@pytest.mark.slow
def test_group_sigterm_during_evaluation_with_workers_checkpoints(tmp_path):
    spec = FinetuneSpec(
        dataset="generated",
        train_samples=16,
        eval_samples=500,
        eval_batch_size=4,
        model="vit_micro",
        patch_size=4,
        img_size=16,
        epochs=2,
        warmup_epochs=1,
        batch_size=8,
        amp="none",
        num_workers=2,
        checkpoint_minutes=0,
        log_every=1,
    )
    (tmp_path / "spec.json").write_text(spec.to_json())
    args = ["finetune", "--spec", "spec.json", "--out", "ft"]
    process = start_in_own_group(args, tmp_path)
    training_workers: set[int] = set()

    def evaluating(lines, members) -> bool:
        """Both steps of epoch 1 logged, its epoch line not yet, and workers the training loop did not start."""
        if len(lines) < 2:
            training_workers.update(members)
            return False
        return len(lines) == 2 and bool(set(members) - training_workers)

    kill_group_when(process, tmp_path / "ft" / "metrics.jsonl", evaluating)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 143, stderr
    assert "killed by signal" not in stderr, stderr
    # The signal came during epoch 1's evaluation: the run stopped after the first step of epoch 2.
    assert load_checkpoint(tmp_path / "ft" / "checkpoint.pt")["loop"]["optimizer_steps"] == 3, stderr
    resumed = normae(args + ["--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert summary["epochs"] == 2 and [r["epoch"] for r in summary["history"]] == [1, 2]


def test_dataloader_workers_ignore_the_loops_signals_but_end_on_their_parents_sigterm():
    signals = StopSignals(stop=frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGUSR2}))
    assert set(signals.handled) == {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2}
    init = pickle.loads(pickle.dumps(signals.worker_init()))  # as a spawned worker gets it
    ready, said = os.pipe()
    worker = os.fork()
    if worker == 0:  # a DataLoader worker after its init function ran
        try:
            init(0)
            os.write(said, b"ready")
            while True:
                time.sleep(1)
        finally:
            os._exit(1)
    os.close(said)
    assert os.read(ready, 5) == b"ready"
    for sig in signals.handled:  # from another process, as a signal to the whole group comes: ignored
        subprocess.run([sys.executable, "-c", f"import os; os.kill({worker}, {int(sig)})"], check=True)
    time.sleep(0.5)
    assert os.waitpid(worker, os.WNOHANG) == (0, 0), "a signal from another process ended the worker"
    os.kill(worker, signal.SIGTERM)  # from its parent, as the DataLoader terminates a worker: it ends
    _, status = os.waitpid(worker, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert signal.getsignal(signal.SIGTERM) != signal.SIG_IGN, "the test process itself is untouched"


# ---------------------------------------------------------------- Low 9: one line, not a traceback


@pytest.mark.slow  # keeps make test-fast under 3 minutes
def test_out_at_a_file_is_one_line(tmp_path):
    spec = tiny_run_spec(tmp_path)
    (tmp_path / "taken").write_text("a file")
    for out in ("taken", "taken/run"):
        assert_one_line_error(normae(pretrain_args(spec, out), tmp_path), "pretrain", "taken is a file")
    assert (tmp_path / "taken").read_text() == "a file"


def plant_checkpoint(tmp_path: Path, content: bytes | None = None, state=None) -> Path:
    """A run folder holding the tiny spec and ``content`` (or ``state`` saved by torch) as checkpoint.pt."""
    spec = tiny_run_spec(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.json").write_text(spec.read_text())
    if state is not None:
        torch.save(state, run / "checkpoint.pt")
    else:
        (run / "checkpoint.pt").write_bytes(content)
    return spec


@pytest.mark.slow  # keeps make test-fast under 3 minutes
def test_a_checkpoint_without_resume_is_one_line(tmp_path):
    spec = plant_checkpoint(tmp_path, state={"model": {}})
    result = normae(pretrain_args(spec, "run"), tmp_path)
    assert_one_line_error(result, "pretrain", "run/checkpoint.pt exists", "--resume")
    assert (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["truncated", "random", "not a dict"])
def test_an_unreadable_checkpoint_on_resume_is_one_line(tmp_path, kind):
    whole = tmp_path / "whole.pt"
    torch.save({"model": {"w": torch.zeros(4096)}, "loop": {}}, whole)
    content = {
        "truncated": whole.read_bytes()[:2000],
        "random": os.urandom(5000),
        "not a dict": None,
    }[kind]
    spec = plant_checkpoint(tmp_path, content, state=[1, 2, 3] if content is None else None)
    result = normae(pretrain_args(spec, "run", "--resume"), tmp_path)
    line = assert_one_line_error(result, "pretrain", "run/checkpoint.pt", "delete it")
    assert "weights_only" not in line, "never advise loading an unknown file as code"


@pytest.mark.slow  # keeps make test-fast under 3 minutes
def test_a_checkpoint_of_another_model_size_is_one_line_naming_the_file(tmp_path):
    from normae.core.model import build_mae_from_spec
    from normae.training.state import LoopState

    other = build_mae_from_spec(small_spec(model="vit_tiny"), 16)
    state = {"model": other.state_dict(), "optimizer": {}, "scaler": {}, "loop": LoopState().to_dict(), "rng": []}
    spec = plant_checkpoint(tmp_path, state=state)
    result = normae(pretrain_args(spec, "run", "--resume"), tmp_path)
    assert_one_line_error(result, "pretrain", "run/checkpoint.pt does not fit this run", "delete it")


def fake_runs(root: Path, plan, run_ids) -> None:
    """Finished runs as the tables read them: a summary.json each, with its run id, spec and a top1."""
    specs = {**plan.pretrain, **plan.evaluations}
    for run_id in run_ids:
        folder = RunFolder(root / "results" / "runs" / run_id)
        folder.path.mkdir(parents=True)
        summary = {"run_id": run_id, "spec": specs[run_id].to_dict(), "top1": 20.0, "final": {"loss": 1.0}}
        folder.summary_path.write_text(json.dumps(summary))


def table_with_one_bad_summary(tmp_path: Path, tiny_plan, bad) -> tuple[subprocess.CompletedProcess, Path]:
    """``normae tables table6`` over finished runs, one of whose summary.json is written by ``bad(summary)``."""
    eval_ids = sorted(tiny_plan.tables["T6"].eval_ids())
    fake_runs(tmp_path, tiny_plan, eval_ids)
    path = RunFolder(tmp_path / "results" / "runs" / eval_ids[1]).summary_path
    path.write_text(bad(json.loads(path.read_text())))
    return normae(["tables", "table6", "--scale", "tiny", "--root", ".", "--out", "tables"], tmp_path), path


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda s: json.dumps({k: v for k, v in s.items() if k != "top1"}), id="metric missing"),
        pytest.param(lambda s: json.dumps([s]), id="a list"),
        pytest.param(lambda s: json.dumps({**s, "top1": "20"}), id="metric a string"),
    ],
)
def test_tables_with_a_summary_missing_the_metric_or_not_an_object_is_one_line(tmp_path, tiny_plan, bad):
    result, path = table_with_one_bad_summary(tmp_path, tiny_plan, bad)
    assert_one_line_error(result, "tables", str(Path("results/runs") / path.parent.name / "summary.json"))
    assert not (tmp_path / "tables" / "table6.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("patch_size", ["0", "-4"])
def test_cnp_stats_with_a_patch_size_below_one_is_one_line(tmp_path, patch_size):
    args = ["cnp-stats", "--source", "generated", "--images", "8", "--img-size", "16", "--patch-size", patch_size]
    result = normae(args + ["--out", "stats.json"], tmp_path)
    assert_one_line_error(result, "cnp-stats", "--patch-size")
    assert not (tmp_path / "stats.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault, kept_epoch",
    [
        (["full-checkpoint", "1"], 1),  # epoch 2's checkpoint finds the disk full
        (["full-metrics", "11"], 1),  # the 3rd step line of epoch 2 (epoch 1 wrote 8 step lines and 1 epoch line)
    ],
)
def test_a_full_disk_is_one_line_keeps_the_last_checkpoint_and_resumes_exactly(tmp_path, straight, fault, kept_epoch):
    spec = tiny_run_spec(tmp_path)
    result = normae(pretrain_args(spec, "run"), tmp_path, entry=with_fault(*fault))
    line = assert_one_line_error(result, "pretrain", "the disk is full", "run/checkpoint.pt) is kept", "--resume")
    assert ("checkpoint.pt at" in line) == (fault[0] == "full-checkpoint"), line
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["loop"]["epoch"] == kept_epoch
    assert not list((tmp_path / "run").glob(".*.tmp")), "the failed write left its temporary file"
    resumed = normae(pretrain_args(spec, "run", "--resume"), tmp_path)  # space freed
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(straight, tmp_path / "run")


@pytest.fixture
def small_disk(tmp_path, straight):
    """A real tmpfs that holds one checkpoint of ``tiny_run_spec`` but not a second beside it (an atomic write
    needs both), so epoch 2's checkpoint finds the disk full. Root mounts it; skipped, saying why, elsewhere."""
    # the straight run finished, so its checkpoint holds the weights alone; one with AdamW's two moments is
    # about 3x that: 4.5x holds one such checkpoint, not two
    size = (straight / "checkpoint.pt").stat().st_size * 9 // 2
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}): a real full disk needs root")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=False)


@pytest.mark.slow
def test_a_real_full_disk_during_a_checkpoint_is_one_line_and_resumes_exactly(tmp_path, straight, small_disk):
    """torch's zip writer turns the ENOSPC of a real disk into 'RuntimeError: unexpected pos'; a faked
    OSError from torch.save does not show that."""
    spec = tiny_run_spec(tmp_path)
    result = normae(pretrain_args(spec, str(small_disk / "run")), tmp_path)
    assert_one_line_error(result, "pretrain", "the disk is full", "checkpoint.pt at", "is kept", "--resume")
    assert load_checkpoint(small_disk / "run" / "checkpoint.pt")["loop"]["epoch"] == 1
    assert not list((small_disk / "run").glob(".*.tmp")), "the failed write left its temporary file"
    shutil.copytree(small_disk / "run", tmp_path / "run")  # moved to a disk with room
    resumed = normae(pretrain_args(spec, "run", "--resume"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(straight, tmp_path / "run")


@pytest.mark.slow
def test_a_full_disk_under_tensorboard_is_one_line_naming_its_files(tmp_path):
    """n05: the event writer's thread failed with a traceback, then the run ended naming no file."""
    pytest.importorskip("tensorboard")
    result = normae(pretrain_args(tiny_run_spec(tmp_path), "run"), tmp_path, entry=with_fault("full-events", "20"))
    assert_one_line_error(result, "pretrain", "the disk is full", "run/events/events.out.tfevents.*")


def test_a_full_disk_outside_training_is_one_line(tmp_path, tiny_plan):
    run_id = next(iter(tiny_plan.pretrain))
    result = normae(
        ["spec", run_id, "--scale", "tiny", "--out", "spec.json"], tmp_path, entry=with_fault("full-fsync", "0")
    )
    assert_one_line_error(result, "spec", "the disk is full", "run the same command again")
    assert list(tmp_path.iterdir()) == [], "the failed write left a file behind"


@pytest.mark.slow  # starts DataLoader worker processes: 14 s here, the slowest test outside `slow`
def test_an_image_error_in_a_dataloader_worker_is_one_line_naming_the_image(tmp_path, imagenet_root):
    for image in (imagenet_root / "train").rglob("*_*.*"):
        image.write_bytes(b"not an image")
    args = ["pretrain", "--dataset", "imagenet1k", "--data-root", str(imagenet_root), "--model", "vit_micro"]
    args += ["--img-size", "16", "--patch-size", "4", "--train-samples", "64", "--batch-size", "8"]
    args += ["--epochs", "1", "--warmup-epochs", "0", "--num-workers", "2", "--out", "run"]
    result = normae(args, tmp_path)
    line = assert_one_line_error(result, "pretrain", "cannot read image", str(imagenet_root / "train"))
    assert "DataLoader worker" not in result.stderr and "Original Traceback" not in result.stderr, line


# ---------------------------------------------------------------- Low 11: leftovers and lost detail


@pytest.mark.slow  # keeps make test-fast under 3 minutes
def test_temporary_files_of_killed_writes_are_removed_when_a_run_starts(tmp_path):
    spec = tiny_run_spec(tmp_path, epochs=1, warmup_epochs=0, batch_size=32)
    run = tmp_path / "run"
    run.mkdir()
    stale = [".checkpoint.pt.k3j_x9q1.tmp", ".metrics.jsonl.a8b2c7d0.tmp", ".summary.json.zz0011yy.tmp"]
    others = [".notes.txt.a8b2c7d0.tmp", "checkpoint.pt.tmp", "mine.tmp"]  # not the atomic writer's: kept
    for name in stale + others:
        (run / name).write_bytes(b"x" * 100)
    result = normae(pretrain_args(spec, "run"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert not [name for name in stale if (run / name).exists()]
    assert all((run / name).exists() for name in others)
    assert result.stderr.count("left by a write that was killed") == len(stale)


@pytest.mark.slow
def test_metrics_cut_on_resume_is_atomic(tmp_path, straight):
    spec = tiny_run_spec(tmp_path)
    crashed = normae(pretrain_args(spec, "run"), tmp_path, entry=with_fault("kill-at-step", "12"))  # epoch 2, step 4
    assert crashed.returncode == 137, crashed.stderr
    metrics = tmp_path / "run" / "metrics.jsonl"
    before = metrics.read_bytes()
    assert len(before.splitlines()) == 9 + 3  # epoch 1 (8 steps and its line) and 3 steps of epoch 2
    # Killed after writing the cut metrics but before renaming them over metrics.jsonl:
    killed = normae(
        pretrain_args(spec, "run", "--resume"), tmp_path, entry=with_fault("kill-before-rename", "metrics.jsonl")
    )
    assert killed.returncode == 137, killed.stderr
    assert metrics.read_bytes() == before, "metrics.jsonl was cut in place, not through a temporary file"
    assert len(list((tmp_path / "run").glob(".metrics.jsonl.*.tmp"))) == 1
    resumed = normae(pretrain_args(spec, "run", "--resume"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not list((tmp_path / "run").glob(".*.tmp"))
    assert_same_run(straight, tmp_path / "run")


@pytest.mark.slow
def test_a_metrics_line_cut_inside_what_the_checkpoint_counts_is_dropped_on_resume(tmp_path):
    """n96: metrics.jsonl cut inside line 5 after epoch 1's checkpoint (which counts 9 lines): the resume keeps
    the 4 whole records, says so, and the next record starts on a line of its own; the NoR-MAE run finishes."""
    spec = tiny_run_spec(tmp_path)
    crashed = normae(pretrain_args(spec, "run"), tmp_path, entry=with_fault("kill-at-step", "12"))  # epoch 2, step 4
    assert crashed.returncode == 137, crashed.stderr
    metrics = tmp_path / "run" / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])
    resumed = normae(pretrain_args(spec, "run", "--resume"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "5 of the 9 records the checkpoint counts are cut short" in resumed.stderr, resumed.stderr
    records = [json.loads(line) for line in metrics.read_text().splitlines()]  # every line whole
    assert records[:4] == [json.loads(line) for line in lines[:4]]
    assert records[-1]["kind"] == "epoch" and records[-1]["epoch"] == 2
    assert (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize(
    "bad, says",
    [
        pytest.param(lambda s: json.dumps({k: v for k, v in s.items() if k != "run_id"}), "run_id", id="no run id"),
        pytest.param(lambda s: json.dumps({**s, "run_id": "another-run"}), "another-run", id="another run's"),
        pytest.param(lambda s: json.dumps({k: v for k, v in s.items() if k != "spec"}), "no spec", id="no spec"),
        pytest.param(lambda s: json.dumps({**s, "top1": math.nan}), "nan", id="NaN metric"),
    ],
)
def test_tables_refuse_a_summary_without_run_id_or_spec_or_with_a_nan_metric(tmp_path, tiny_plan, bad, says):
    result, path = table_with_one_bad_summary(tmp_path, tiny_plan, bad)
    assert_one_line_error(result, "tables", str(Path("results/runs") / path.parent.name / "summary.json"), says)
    assert not (tmp_path / "tables" / "table6.csv").exists()
