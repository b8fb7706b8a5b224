"""The training loop: schedule, exact resume after a signal or a crash, accumulation, bad losses."""

import json
import math
import os
import signal

import pytest
import torch

from normae.errors import RunFolderError
from normae.stages import pretrain as stages
from normae.training.checkpoint import load_checkpoint
from normae.training.loop import LoopConfig, learning_rate
from normae.training.runtime import set_threads
from normae.training.sampling import SeededSamples
from normae.training.signals import NonFiniteLossError, StopSignals, TrainingInterrupted
from normae.training.state import LoopState

from helpers import assert_same_run, final_weights, small_spec, stop_at_call


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
        # model-side randomness; signal lands mid-accumulation
        pytest.param({"cnp": "random", "accum_iter": 2}, 11, marks=pytest.mark.slow),
        pytest.param({"method": "mae"}, 8, marks=pytest.mark.slow),  # last step of the first epoch
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
    state = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["loop"]
    accum = spec.accum_iter
    assert state["batches_done"] % accum == 0
    assert state["epoch"] * 8 + state["batches_done"] == math.ceil(stop_call / accum) * accum

    with pytest.raises(FileExistsError, match="--resume"):
        stages.run_pretrain(spec, tmp_path / "stopped")
    calls["n"] = -(10**9)
    stages.run_pretrain(spec, tmp_path / "stopped", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")


@pytest.mark.slow
def test_crash_resumes_from_last_epoch_checkpoint(tmp_path, monkeypatch):
    spec = small_spec(epochs=3, warmup_epochs=1)
    stages.run_pretrain(spec, tmp_path / "straight")

    def crash():
        raise KeyboardInterrupt("simulated kill")

    calls = stop_at_call(monkeypatch, 8 + 5, crash)
    with pytest.raises(KeyboardInterrupt):
        stages.run_pretrain(spec, tmp_path / "crashed")
    state = load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")["loop"]
    assert (state["epoch"], state["batches_done"]) == (1, 0)
    assert len((tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()) > state["metrics_lines"]
    calls["n"] = -(10**9)
    stages.run_pretrain(spec, tmp_path / "crashed", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "crashed")


@pytest.mark.slow
def test_workers_do_not_change_the_result(tmp_path):
    spec = small_spec(epochs=1, warmup_epochs=0)
    stages.run_pretrain(spec, tmp_path / "w0")
    stages.run_pretrain(small_spec(epochs=1, warmup_epochs=0, num_workers=2), tmp_path / "w2")
    for key, value in final_weights(tmp_path / "w0").items():
        assert torch.equal(value, final_weights(tmp_path / "w2")[key]), key


@pytest.mark.slow
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
    with pytest.raises(NonFiniteLossError, match="last good checkpoint") as error:
        stages.run_pretrain(spec, tmp_path / "run")
    assert "at epoch 2/2, step 10:" in str(error.value)  # the 11th batch: epochs count from 1 in messages
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (state["loop"]["epoch"], state["loop"]["batches_done"]) == (1, 0)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.slow
def test_finished_run_is_not_rerun_and_other_spec_is_refused(tmp_path, monkeypatch):
    spec = small_spec(epochs=1, warmup_epochs=0)
    first = stages.run_pretrain(spec, tmp_path / "run")
    monkeypatch.setattr(stages, "pretrain_step", lambda *a: pytest.fail("a finished run must not train again"))
    assert stages.run_pretrain(spec, tmp_path / "run")["final"] == first["final"]
    other = small_spec(epochs=1, warmup_epochs=0, lam=1e-4)
    # Refused while the folder holds a finished run of another spec (it used to answer with that run's
    # summary), and after its summary is gone; the message names both digests.
    for _ in range(2):
        with pytest.raises(RunFolderError, match=f"holds another run.*{spec.digest()[:8]}.*{other.digest()[:8]}"):
            stages.run_pretrain(other, tmp_path / "run")
        (tmp_path / "run" / "summary.json").unlink(missing_ok=True)


@pytest.mark.slow
def test_a_summary_rewritten_by_a_resume_after_the_last_epoch_keeps_the_speed(tmp_path, monkeypatch):
    """w08b: the resume trains no step, so the speed comes from the step times the checkpoint kept."""
    spec = small_spec(epochs=1, warmup_epochs=0)
    first = stages.run_pretrain(spec, tmp_path / "run")
    (tmp_path / "run" / "summary.json").unlink()
    monkeypatch.setattr(stages, "pretrain_step", lambda *a: pytest.fail("a finished run must not train again"))
    again = stages.run_pretrain(spec, tmp_path / "run", resume=True)
    assert again["step_time_median_s"] == first["step_time_median_s"] > 0
    assert again["images_per_second"] == first["images_per_second"] > 0


@pytest.mark.slow
def test_a_finished_run_keeps_its_final_weights_without_the_optimiser_state(tmp_path, monkeypatch):
    """#22 (14): the optimiser's moments (twice the weights) are dropped when a run finishes; the weights,
    loop state, spec and inputs stay, the run still answers 'finished', and NORMAE_KEEP_RESUME_STATE=1 keeps all."""
    from normae.training.checkpoint import KEEP_RESUME_STATE, RESUME_ONLY

    spec = small_spec(epochs=1, warmup_epochs=0)
    first = stages.run_pretrain(spec, tmp_path / "slim")
    slim = load_checkpoint(tmp_path / "slim" / "checkpoint.pt")
    assert not set(RESUME_ONLY) & set(slim) and {"model", "loop", "spec", "inputs"} <= set(slim)
    monkeypatch.setenv(KEEP_RESUME_STATE, "1")
    stages.run_pretrain(spec, tmp_path / "kept")
    kept = load_checkpoint(tmp_path / "kept" / "checkpoint.pt")
    assert set(RESUME_ONLY) <= set(kept)
    assert all(torch.equal(kept["model"][k], v) for k, v in slim["model"].items())
    assert (tmp_path / "slim" / "checkpoint.pt").stat().st_size < (tmp_path / "kept" / "checkpoint.pt").stat().st_size
    # summary.json lost (Snakemake's --rerun-incomplete): the slim checkpoint gives the same summary back
    monkeypatch.delenv(KEEP_RESUME_STATE)
    (tmp_path / "slim" / "summary.json").unlink()
    monkeypatch.setattr(stages, "pretrain_step", lambda *a: pytest.fail("a finished run must not train again"))
    assert stages.run_pretrain(spec, tmp_path / "slim", resume=True)["final"] == first["final"]


def test_too_little_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="lower the batch size"):
        stages.run_pretrain(small_spec(train_samples=4), tmp_path / "run")


@pytest.mark.slow
def test_sigusr1_checkpoints_and_training_goes_on(tmp_path, monkeypatch):
    spec = small_spec()
    stages.run_pretrain(spec, tmp_path / "straight")
    saved = []
    real_save = stages.Trainer.save_checkpoint

    def recording_save(self):
        saved.append((self.state.epoch, self.state.batches_done))
        real_save(self)

    monkeypatch.setattr(stages.Trainer, "save_checkpoint", recording_save)
    stop_at_call(monkeypatch, 3, lambda: os.kill(os.getpid(), signal.SIGUSR1))
    stages.run_pretrain(spec, tmp_path / "signalled")
    assert saved == [(0, 3), (1, 0), (2, 0)]
    assert_same_run(tmp_path / "straight", tmp_path / "signalled")


@pytest.mark.slow
def test_timed_checkpoints_land_mid_epoch_and_resume_exactly(tmp_path, monkeypatch):
    spec = small_spec(checkpoint_minutes=1e-9)
    stages.run_pretrain(spec, tmp_path / "straight")

    def crash():
        raise KeyboardInterrupt("simulated kill")

    calls = stop_at_call(monkeypatch, 6, crash)
    with pytest.raises(KeyboardInterrupt):
        stages.run_pretrain(spec, tmp_path / "crashed")
    state = load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")["loop"]
    assert (state["epoch"], state["batches_done"]) == (0, 5)
    calls["n"] = -(10**9)
    stages.run_pretrain(spec, tmp_path / "crashed", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "crashed")


@pytest.mark.parametrize("amp", [pytest.param("bf16", marks=pytest.mark.slow), "fp16"])
def test_mixed_precision_runs_on_cpu(tmp_path, amp):
    summary = stages.run_pretrain(small_spec(epochs=1, warmup_epochs=0, amp=amp), tmp_path / amp)
    assert summary["amp"] == amp
    assert all(math.isfinite(v) for v in summary["final"].values())


@pytest.mark.slow
def test_keep_freed_memory_cuts_page_faults_of_repeated_large_allocations():
    """Run in a fresh interpreter: the malloc settings are per process and cannot be undone."""
    import subprocess
    import sys

    probe = (
        "import resource, sys, torch\n"
        "from normae.training.runtime import keep_freed_memory\n"
        "if sys.argv[1] == 'keep': assert keep_freed_memory()\n"
        "from normae.core.model import build_mae\n"
        "model = build_mae('vit_micro', img_size=28, patch_size=2, method='nor_mae')\n"
        "images = torch.randn(32, 3, 28, 28)\n"
        "model(images).loss.backward()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(4): model(images).loss.backward()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = {
        mode: int(
            subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True).stdout
        )
        for mode in ("default", "keep")
    }
    assert faults["keep"] * 2 < faults["default"], faults


# ---- the loop's state, its signals and its threads ---------------------------------------------------
def test_loop_state_round_trips_through_a_checkpoint(tmp_path):
    from normae.training.checkpoint import atomic_save

    state = LoopState(
        epoch=2,
        batches_done=3,
        optimizer_steps=19,
        metrics_lines=21,
        epoch_sums={"loss": 1.5, "loss_nor": -3.0},
        epoch_count=3,
        train_seconds=4.25,
        history=[{"epoch": 1, "step": 8, "lr": 1e-3, "loss": 0.9}, {"epoch": 2, "step": 16, "lr": 5e-4, "loss": 0.7}],
    )
    atomic_save({"loop": state.to_dict()}, tmp_path / "checkpoint.pt")
    again = LoopState.from_dict(load_checkpoint(tmp_path / "checkpoint.pt")["loop"])
    assert again == state
    assert again.final_means() == {"loss": 0.7} and LoopState().final_means() == {}
    again.history[0]["loss"] = 0.0
    assert state.history[0]["loss"] == 0.9  # from_dict copies, it does not alias
    with pytest.raises(ValueError, match="missing"):
        LoopState.from_dict({k: v for k, v in state.to_dict().items() if k != "history"})


def test_loop_state_counts_batches_and_closes_epochs():
    state = LoopState()
    state.add_batch({"loss": 1.0, "loss_nor": 2.0})
    state.add_batch({"loss": 3.0, "loss_nor": 4.0})
    assert (state.batches_done, state.epoch_count, state.epoch_means()) == (2, 2, {"loss": 2.0, "loss_nor": 3.0})
    state.finish_epoch({"epoch": 1, "step": 2, "lr": 0.1, **state.epoch_means()})
    assert (state.epoch, state.batches_done, state.epoch_sums, state.epoch_count) == (1, 0, {}, 0)
    assert state.final_means() == {"loss": 2.0, "loss_nor": 3.0}


def test_stop_signals_agree_on_one_signal():
    default = StopSignals()
    assert set(default.handled) == {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2}
    assert default.stopped_by(set()) is None and default.stopped_by({signal.SIGUSR1, signal.SIGUSR2}) is None
    assert default.stopped_by({signal.SIGUSR2, signal.SIGINT}) == signal.SIGINT
    assert default.stopped_by({signal.SIGINT, signal.SIGTERM}) == signal.SIGTERM
    job = StopSignals(stop=frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGUSR2}))
    assert job.stopped_by({signal.SIGUSR1, signal.SIGUSR2}) == signal.SIGUSR2
    assert job.stopped_by({signal.SIGUSR2, signal.SIGTERM}) == signal.SIGTERM
    only_hup = StopSignals(checkpoint=(), stop=frozenset({signal.SIGHUP}))
    assert only_hup.handled == (signal.SIGHUP,)  # a stop signal is always a checkpoint signal


@pytest.mark.slow
def test_sigint_checkpoints_stops_and_resume_equals_uninterrupted(tmp_path, monkeypatch):
    spec = small_spec()
    handler = signal.getsignal(signal.SIGINT)
    straight = stages.run_pretrain(spec, tmp_path / "straight")

    calls = stop_at_call(monkeypatch, 11, lambda: os.kill(os.getpid(), signal.SIGINT))  # in the second epoch
    with pytest.raises(TrainingInterrupted, match="--resume") as stopped:
        stages.run_pretrain(spec, tmp_path / "stopped")
    assert stopped.value.signal == signal.SIGINT
    assert "stopped by SIGINT at epoch 2/2, step 11" in str(stopped.value)
    assert signal.getsignal(signal.SIGINT) is handler  # the loop put the handler back
    state = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["loop"]
    assert (state["epoch"], state["batches_done"], state["optimizer_steps"]) == (1, 3, 11)
    assert [record["epoch"] for record in state["history"]] == [1]
    assert not (tmp_path / "stopped" / "summary.json").exists()

    calls["n"] = -(10**9)
    resumed = stages.run_pretrain(spec, tmp_path / "stopped", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")
    # The resumed run knows the epoch it trained before the stop: its history is the whole run's.
    lines = [json.loads(line) for line in (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()]
    epoch_lines = [{k: v for k, v in line.items() if k != "kind"} for line in lines if line["kind"] == "epoch"]
    assert resumed["history"] == straight["history"] == epoch_lines
    assert [record["epoch"] for record in resumed["history"]] == [1, 2]
    assert sorted({line["epoch"] for line in lines if line["kind"] == "step"}) == [1, 2]
    assert resumed["final"] == {k: v for k, v in epoch_lines[-1].items() if k not in ("epoch", "step", "lr")}


def test_set_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
        assert set_threads() == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_threads() == 2, "SLURM's cpus-per-task comes first"
        monkeypatch.delenv("SLURM_CPUS_PER_TASK")
        assert set_threads() == 1 and torch.get_num_threads() == 1, "then OMP_NUM_THREADS (Snakemake sets it)"
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert set_threads(None) == len(os.sched_getaffinity(0)) == torch.get_num_threads()
        with pytest.raises(ValueError, match="at least 1"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)
