"""SupMAE, Sup NoR-MAE, DMAE and NoR-DMAE through the training loop: the run folder, exact resume, and
two gloo processes equal to one, as for NoR-MAE (tests/test_train.py, tests/test_distributed.py)."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from normae.errors import ConfigError
from normae.spec import BenchSpec
from normae.stages import pretrain as stages
from normae.training.checkpoint import load_checkpoint
from normae.training.signals import TrainingInterrupted

from helpers import assert_same_run, small_spec, stop_at_call

METHODS = ("sup_mae", "sup_nor_mae", "dmae", "nor_dmae")


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A {'model': ...} MAE checkpoint of another init, as a public MAE file is."""
    from normae.core.model import build_mae

    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("teacher") / "mae_teacher.pth"
    torch.save({"model": build_mae("vit_micro", img_size=16, patch_size=4, method="mae").state_dict()}, path)
    return str(path)


def method_spec(method: str, teacher_file: str, **overrides):
    extra = {"teacher": teacher_file, "teacher_model": "vit_micro"} if "dmae" in method else {}
    # sup_hidden 0: a linear head; SupMAE's BatchNorm head makes a step depend on how it is split into passes
    return small_spec(**{"method": method, "sup_hidden": 0, **extra, **overrides})


@pytest.mark.parametrize(
    "method",
    [
        "sup_mae",
        pytest.param("sup_nor_mae", marks=pytest.mark.slow),
        pytest.param("dmae", marks=pytest.mark.slow),
        pytest.param("nor_dmae", marks=pytest.mark.slow),
    ],
)
def test_sigterm_then_resume_equals_uninterrupted(tmp_path, monkeypatch, method, teacher_file):
    spec = method_spec(method, teacher_file)
    straight = stages.run_pretrain(spec, tmp_path / "straight")
    assert straight["final"]["loss"] > 0
    calls = stop_at_call(monkeypatch, 5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(TrainingInterrupted, match="--resume"):
        stages.run_pretrain(spec, tmp_path / "stopped")
    calls["n"] = -(10**9)
    stages.run_pretrain(spec, tmp_path / "stopped", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")
    weights = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["model"]
    assert not any(key.startswith("teacher") for key in weights), "the teacher is not the student's"
    assert any(key.startswith("cls_head.") for key in weights) == method.startswith("sup")
    assert ("aligned_feature_projection_heads.0.weight" in weights) == ("dmae" in method)


def test_bad_teacher_and_options_fail_before_the_run_folder_is_written(tmp_path, teacher_file):
    with pytest.raises(ConfigError, match="needs a teacher"):
        small_spec(method="dmae")
    with pytest.raises(ConfigError, match="alpha must be at least 0"):
        small_spec(method="dmae", teacher=teacher_file, alpha=-1)
    with pytest.raises(ConfigError, match="sup_weight must be at least 0"):
        small_spec(method="sup_mae", sup_weight=-0.1)
    missing = method_spec("dmae", teacher_file, teacher=str(tmp_path / "nowhere.pth"))
    with pytest.raises(Exception, match="nowhere.pth"):
        stages.run_pretrain(missing, tmp_path / "run")
    assert not (tmp_path / "run" / "spec.json").exists()
    too_wide = method_spec("dmae", teacher_file, teacher_model="vit_tiny")  # the file holds a vit_micro
    with pytest.raises(Exception, match="teacher"):
        stages.run_pretrain(too_wide, tmp_path / "run2")
    assert not (tmp_path / "run2" / "spec.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_two_gloo_processes_equal_one(tmp_path, method, teacher_file):
    spec = method_spec(method, teacher_file, epochs=1, warmup_epochs=0, batch_size=8, global_batch=16)
    (tmp_path / "spec.json").write_text(spec.to_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "normae.cli", "pretrain", "--spec", "spec.json", "--out"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m"]
    for command in ([*cli, "single"], [*torchrun, "normae.cli", *cli[3:], "ddp"]):
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    a, b = (load_checkpoint(tmp_path / run / "checkpoint.pt")["model"] for run in ("single", "ddp"))
    # Adam moves a weight by up to lr per step whatever its gradient's size: where the gradient is ~0
    # (attention biases), float-order noise between the two splits can reach that, and no further
    lr = spec.blr * 16 / 256
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=lr, msg=key)
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_bench_times_the_four_methods_interleaved_with_the_teacher_in_dmae_step():
    from normae.analysis.bench import run_bench

    methods = ("mae", "nor_mae", "sup_mae", "dmae")
    spec = BenchSpec(
        model="vit_micro", img_size=16, patch_size=4, batch_size=4, steps=2, warmup=0, teacher_model="vit_mini"
    )
    assert spec.methods == ",".join(methods)  # the four, BenchSpec's default
    result = run_bench(spec)
    assert result["methods"] == list(methods) and result["teacher_model"] == "vit_mini"
    for method in methods:
        assert len(result[method]["step_times_s"]) == 2
    paired = sorted(n / d for n, d in zip(result["nor_mae"]["step_times_s"], result["dmae"]["step_times_s"]))
    assert result["nor_over_dmae_time"] == pytest.approx(sum(paired) / 2)
