"""Two CPU processes (gloo DDP, launched by torchrun) train like one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch

from normae.training.checkpoint import load_checkpoint

from helpers import small_spec


def run_cli(args, cwd, torchrun_processes=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if torchrun_processes:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={torchrun_processes}",
            "-m",
            "normae.cli",
        ]
    else:
        command = [sys.executable, "-m", "normae.cli"]
    return subprocess.run(command + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(tmp_path):
    """One spec (global batch 16, forward passes of at most 4): one process accumulates 4 passes per
    step, each of two processes 2; the weights agree."""
    spec = small_spec(epochs=1, warmup_epochs=0, batch_size=4, global_batch=16, cnp="paper")
    (tmp_path / "spec.json").write_text(spec.to_json())

    single = run_cli(["pretrain", "--spec", "spec.json", "--out", "single"], tmp_path)
    assert single.returncode == 0, single.stderr
    ddp = run_cli(["pretrain", "--spec", "spec.json", "--out", "ddp"], tmp_path, torchrun_processes=2)
    assert ddp.returncode == 0, ddp.stderr

    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["effective_batch"] == 16
    assert summary["batch"] == {
        "global_batch": 16,
        "per_process": 8,
        "micro_batch": 4,
        "accum_iter": 2,
        "world_size": 2,
        "requested": 16,
        "capped": False,
    }
    assert json.loads((tmp_path / "single" / "summary.json").read_text())["batch"]["accum_iter"] == 4
    a = load_checkpoint(tmp_path / "single" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    # every line (each step's and each epoch's mean over its forward passes and processes) agrees
    single_losses, ddp_losses = (
        [json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("single", "ddp")
    )
    assert single_losses and single_losses == pytest.approx(ddp_losses, rel=1e-4)
