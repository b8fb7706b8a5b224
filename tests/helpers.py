"""Helpers shared by several test modules (fixtures are in conftest.py).

Test modules import from here, never from each other. torch and the training stages are imported
inside the helpers that need them, so a test module that uses only the spec or file helpers (and
conftest.py, which imports this module) stays torch-free.
"""

import gzip
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from normae.spec import PretrainSpec

# ---------------------------------------------------------------- pre-training runs


def small_spec(**overrides) -> PretrainSpec:
    settings = dict(
        dataset="generated",
        train_samples=64,
        model="vit_micro",
        img_size=16,
        patch_size=4,
        method="nor_mae",
        epochs=2,
        warmup_epochs=1,
        batch_size=8,
        blr=1e-3,
        num_workers=0,
        checkpoint_minutes=0,
        log_every=1,
    )
    settings.update(overrides)
    return PretrainSpec(**settings)


def pretrain_run(folder: Path, **overrides) -> Path:
    """A finished one-epoch pre-training run in ``folder`` (``small_spec``: NoR-MAE, vit_micro at 16 px, patch 4,
    here on 32 generated images); ``overrides`` change the spec. The ``pretrained`` fixture is one of these."""
    from normae.stages.pretrain import run_pretrain

    run_pretrain(small_spec(**{"train_samples": 32, "epochs": 1, "warmup_epochs": 0, **overrides}), folder)
    return folder


def final_weights(run_dir):
    from normae.training.checkpoint import load_checkpoint

    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def assert_same_run(a, b):
    import torch

    weights_a, weights_b = final_weights(a), final_weights(b)
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()
    summary_a, summary_b = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert summary_a["final"] == summary_b["final"]
    assert summary_a["optimizer_steps"] == summary_b["optimizer_steps"]
    assert summary_a.get("history") == summary_b.get("history")


def stop_at_call(monkeypatch, call_number, action):
    """Make the pre-training step run ``action()`` on its ``call_number``-th call (1-based)."""
    from normae.stages import pretrain as stages

    calls = {"n": 0}
    real_step = stages.pretrain_step

    def step(model, batch):
        calls["n"] += 1
        if calls["n"] == call_number:
            action()
        return real_step(model, batch)

    monkeypatch.setattr(stages, "pretrain_step", step)
    return calls


# ---------------------------------------------------------------- the command line in a subprocess

NORMAE = [sys.executable, "-m", "normae.cli"]


def normae(args, cwd=None, *, entry=NORMAE, env=None, timeout=900) -> subprocess.CompletedProcess:
    """Run ``normae ARGS`` in a fresh interpreter, as a user does (arguments may be paths).

    ``entry`` is the command before the arguments: another one plants a fault first (test_faults_runtime);
    ``env`` is the whole environment (default ``job_env()``); ``timeout`` only stops a hung command.
    """
    command = [*entry, *(str(arg) for arg in args)]
    return subprocess.run(
        command, cwd=cwd, env=job_env() if env is None else env, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess, command: str, *named: str) -> str:
    """Exit 2, no traceback, and the last stderr line is the one error line, ``normae COMMAND: error: ...``,
    naming each of ``named``; any other line is the command's own ``[normae]`` progress. Returns the line."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    last = lines[-1]
    assert last.startswith(f"normae {command}: error: "), result.stderr
    assert [line for line in lines if not line.startswith("[normae] ")] == [last], result.stderr
    for text in named:
        assert text in last, (text, last)
    return last


# ---------------------------------------------------------------- the launcher in a subprocess

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
    settings = dict(train_samples=128, img_size=28, method="mae", batch_size=32)
    return small_spec(**{**settings, **overrides})


def job_env() -> dict:
    # One thread per process: the same floating-point reductions in the job and in the reference run.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def launch_command(spec_path, out, launcher, resources=None) -> list[str]:
    command = [
        sys.executable,
        "-c",
        LAUNCHER,
        "launch",
        "--spec",
        str(spec_path),
        "--out",
        str(out),
        "--launcher",
        launcher,
    ]
    return command + (["--slurm", json.dumps(resources)] if resources is not None else [])


def start_launcher(spec_path, out, launcher, resources=None, cwd=None) -> subprocess.Popen:
    return subprocess.Popen(
        launch_command(spec_path, out, launcher, resources),
        cwd=cwd,
        env=job_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
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


# ---------------------------------------------------------------- data files in their real layouts

IDX_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}


def write_idx(path, array, compresslevel=9):
    array = np.asarray(array)
    header = bytes([0, 0, IDX_TYPE_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=compresslevel)
    path.write_bytes(payload)
    return path


def write_fashion_mnist(folder, train_count, test_count, gzipped=("train",), compresslevel=9):
    """Write the four IDX files with random images and labels; return {split: (images, labels)}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    for split, prefix, count in (("train", "train", train_count), ("test", "t10k", test_count)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        suffix = ".gz" if split in gzipped else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compresslevel)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compresslevel)
        written[split] = images, labels
    return written


# The wnid the imagenet_root fixture (conftest.py) adds beside the 100 listed ones.
EXTRA_WNID = "n99999999"


def write_image(path, value):
    Image.new("RGB", (12, 10), (value, 255 - value, 7)).save(path)


def downstream_spec(stage: str, **overrides):
    """A one-epoch fine-tuning or linear-probing spec from scratch on generated images (vit_micro, patch 4)."""
    from normae.spec import FinetuneSpec, LinprobeSpec

    settings = dict(
        init="none",
        dataset="generated",
        model="vit_micro",
        patch_size=4,
        epochs=1,
        warmup_epochs=0,
        batch_size=16,
        num_workers=0,
    )
    return {"finetune": FinetuneSpec, "linprobe": LinprobeSpec}[stage](**{**settings, **overrides})
