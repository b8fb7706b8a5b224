"""The training loop: schedule, exact resume after a signal or a crash, accumulation, bad losses."""

import json
import math
import os
import signal

import pytest
import torch

from normae.stages import pretrain as stages
from normae.training.checkpoint import load_checkpoint
from normae.spec import PretrainSpec
from normae.training.loop import LoopConfig, NonFiniteLossError, SeededSamples, TrainingInterrupted, learning_rate


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


def final_weights(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def assert_same_run(a, b):
    weights_a, weights_b = final_weights(a), final_weights(b)
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()
    summary_a, summary_b = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert summary_a["final"] == summary_b["final"]
    assert summary_a["optimizer_steps"] == summary_b["optimizer_steps"]


def stop_at_call(monkeypatch, call_number, action):
    """Make the pre-training step run ``action()`` on its ``call_number``-th call (1-based)."""
    calls = {"n": 0}
    real_step = stages.pretrain_step

    def step(model, batch):
        calls["n"] += 1
        if calls["n"] == call_number:
            action()
        return real_step(model, batch)

    monkeypatch.setattr(stages, "pretrain_step", step)
    return calls


def test_learning_rate_warmup_then_cosine():
    cfg = LoopConfig(epochs=10, batch_size=1, lr=1.0, min_lr=0.1, warmup_epochs=2)
    assert learning_rate(0, cfg) == 0
    assert learning_rate(1, cfg) == pytest.approx(0.5)
    assert learning_rate(2, cfg) == pytest.approx(1.0)
    assert learning_rate(6, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert learning_rate(10, cfg) == pytest.approx(0.1)
    values = [learning_rate(e / 10, cfg) for e in range(20, 100)]
    assert all(x >= y for x, y in zip(values, values[1:]))


def test_seeded_samples_ignore_global_randomness():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return torch.rand(3), index

    samples = SeededSamples(Noisy(), seed=3, noise_length=5)
    torch.manual_seed(0)
    first = samples[(1, 2)]
    state = torch.get_rng_state()
    torch.manual_seed(123)
    again = samples[(1, 2)]
    assert torch.equal(first[0], again[0]) and torch.equal(first[2], again[2])
    assert not torch.equal(samples[(2, 2)][0], first[0])
    torch.manual_seed(0)
    samples[(1, 2)]
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    "overrides, stop_call",
    [
        ({}, 5),  # mid-epoch 1
        ({"cnp": "random", "accum_iter": 2}, 11),  # model-side randomness; signal lands mid-accumulation
        ({"method": "mae"}, 8),  # last step of the first epoch
    ],
)
def test_sigterm_then_resume_equals_uninterrupted(tmp_path, monkeypatch, overrides, stop_call):
    spec = small_spec(**overrides)
    stages.run_pretrain(spec, tmp_path / "straight")

    calls = stop_at_call(monkeypatch, stop_call, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(TrainingInterrupted, match="--resume"):
        stages.run_pretrain(spec, tmp_path / "stopped")
    assert (tmp_path / "stopped" / "checkpoint.pt").exists()
    assert not (tmp_path / "stopped" / "summary.json").exists()
    state = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")
    accum = spec.accum_iter
    assert state["batches_done"] % accum == 0
    assert state["epoch"] * 8 + state["batches_done"] == math.ceil(stop_call / accum) * accum

    with pytest.raises(FileExistsError, match="--resume"):
        stages.run_pretrain(spec, tmp_path / "stopped")
    calls["n"] = -10**9
    stages.run_pretrain(spec, tmp_path / "stopped", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")


def test_crash_resumes_from_last_epoch_checkpoint(tmp_path, monkeypatch):
    spec = small_spec(epochs=3, warmup_epochs=1)
    stages.run_pretrain(spec, tmp_path / "straight")

    def crash():
        raise KeyboardInterrupt("simulated kill")

    calls = stop_at_call(monkeypatch, 8 + 5, crash)
    with pytest.raises(KeyboardInterrupt):
        stages.run_pretrain(spec, tmp_path / "crashed")
    state = load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")
    assert (state["epoch"], state["batches_done"]) == (1, 0)
    assert len((tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()) > state["metrics_lines"]
    calls["n"] = -10**9
    stages.run_pretrain(spec, tmp_path / "crashed", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "crashed")


def test_workers_do_not_change_the_result(tmp_path):
    spec = small_spec(epochs=1, warmup_epochs=0)
    stages.run_pretrain(spec, tmp_path / "w0")
    stages.run_pretrain(small_spec(epochs=1, warmup_epochs=0, num_workers=2), tmp_path / "w2")
    for key, value in final_weights(tmp_path / "w0").items():
        assert torch.equal(value, final_weights(tmp_path / "w2")[key]), key


def test_accumulation_matches_a_bigger_batch(tmp_path):
    stages.run_pretrain(small_spec(epochs=1, warmup_epochs=0, batch_size=16), tmp_path / "big")
    stages.run_pretrain(small_spec(epochs=1, warmup_epochs=0, batch_size=8, accum_iter=2), tmp_path / "accum")
    big, accum = final_weights(tmp_path / "big"), final_weights(tmp_path / "accum")
    for key in big:
        torch.testing.assert_close(big[key], accum[key], rtol=1e-4, atol=1e-5, msg=key)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    spec = small_spec()
    real_step = stages.pretrain_step
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        loss, metrics = real_step(model, batch)
        return (loss * float("nan") if calls["n"] == 11 else loss), metrics

    monkeypatch.setattr(stages, "pretrain_step", poisoned)
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        stages.run_pretrain(spec, tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (state["epoch"], state["batches_done"]) == (1, 0)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "run" / "summary.json").exists()


def test_finished_run_is_not_rerun_and_other_spec_is_refused(tmp_path, monkeypatch):
    spec = small_spec(epochs=1, warmup_epochs=0)
    first = stages.run_pretrain(spec, tmp_path / "run")
    monkeypatch.setattr(stages, "pretrain_step", lambda *a: pytest.fail("a finished run must not train again"))
    assert stages.run_pretrain(spec, tmp_path / "run")["final"] == first["final"]
    (tmp_path / "run" / "summary.json").unlink()
    with pytest.raises(FileExistsError, match="different spec"):
        stages.run_pretrain(small_spec(epochs=1, warmup_epochs=0, lam=1e-4), tmp_path / "run")


def test_too_little_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="lower the batch size"):
        stages.run_pretrain(small_spec(train_samples=4), tmp_path / "run")


def test_sigusr1_checkpoints_and_training_goes_on(tmp_path, monkeypatch):
    spec = small_spec()
    stages.run_pretrain(spec, tmp_path / "straight")
    saved = []
    real_save = stages.Trainer.save_checkpoint

    def recording_save(self):
        saved.append((self.epoch, self.batches_done))
        real_save(self)

    monkeypatch.setattr(stages.Trainer, "save_checkpoint", recording_save)
    stop_at_call(monkeypatch, 3, lambda: os.kill(os.getpid(), signal.SIGUSR1))
    stages.run_pretrain(spec, tmp_path / "signalled")
    assert saved == [(0, 3), (1, 0), (2, 0)]
    assert_same_run(tmp_path / "straight", tmp_path / "signalled")


def test_timed_checkpoints_land_mid_epoch_and_resume_exactly(tmp_path, monkeypatch):
    spec = small_spec(checkpoint_minutes=1e-9)
    stages.run_pretrain(spec, tmp_path / "straight")

    def crash():
        raise KeyboardInterrupt("simulated kill")

    calls = stop_at_call(monkeypatch, 6, crash)
    with pytest.raises(KeyboardInterrupt):
        stages.run_pretrain(spec, tmp_path / "crashed")
    state = load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")
    assert (state["epoch"], state["batches_done"]) == (0, 5)
    calls["n"] = -10**9
    stages.run_pretrain(spec, tmp_path / "crashed", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "crashed")


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_runs_on_cpu(tmp_path, amp):
    summary = stages.run_pretrain(small_spec(epochs=1, warmup_epochs=0, amp=amp), tmp_path / amp)
    assert summary["amp"] == amp
    assert all(math.isfinite(v) for v in summary["final"].values())


def test_keep_freed_memory_cuts_page_faults_of_repeated_large_allocations():
    """Run in a fresh interpreter: the malloc settings are per process and cannot be undone."""
    import subprocess
    import sys

    probe = (
        "import resource, sys, torch\n"
        "from normae.training.loop import keep_freed_memory\n"
        "if sys.argv[1] == 'keep': assert keep_freed_memory()\n"
        "from normae.core.model import build_mae\n"
        "model = build_mae('vit_micro', img_size=28, patch_size=2, method='nor_mae')\n"
        "images = torch.randn(32, 3, 28, 28)\n"
        "model(images).loss.backward()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(4): model(images).loss.backward()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = {mode: int(subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True).stdout)
              for mode in ("default", "keep")}
    assert faults["keep"] * 2 < faults["default"], faults
