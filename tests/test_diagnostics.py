"""NoR-MAE's diagnostics (nor_grad_share, branch_alignment, CNP true-neighbour fraction), their logging,
TensorBoard events and progress lines; and that measuring them leaves the training result unchanged."""

import json
import re

import pytest
import torch

from normae.core import diagnostics as diag
from normae.core.cnp import cnp_source_index, true_neighbor_fraction
from normae.core.model import build_mae, random_masking
from normae.stages import pretrain as stages
from normae.training.checkpoint import load_checkpoint
from normae.training.progress import progress_line

from helpers import small_spec


def nor_model(cnp="paper", lam=0.3):
    torch.manual_seed(0)
    return build_mae("vit_micro", img_size=16, patch_size=4, method="nor_mae", lam=lam, cnp=cnp)


def smooth_images(n=4, size=16, seed=0):
    """Low-frequency images: neighbouring patches are alike, so closest neighbours are well defined."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def test_nor_grad_share_matches_separate_gradients():
    model = nor_model()
    images, noise = smooth_images(), torch.rand(4, 16, generator=torch.Generator().manual_seed(1))
    out = model(images, noise)
    share = diag.nor_grad_share(model, out)
    params = [p for p in model.parameters() if p.requires_grad]

    def norm(loss):  # a fresh forward per gradient: the slow reference
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return torch.sqrt(sum(g.double().pow(2).sum() for g in grads if g is not None))

    reference = norm(model.lam * model(images, noise).loss_nor) / norm(model(images, noise).loss_rec)
    assert share.item() == pytest.approx(reference.item(), rel=1e-4)
    assert share.item() > 0
    out.loss.backward()  # the graph is still there for the training step's backward
    assert model.decoder_pred.weight.grad is not None


def test_branch_alignment_is_the_mean_token_correlation():
    generator = torch.Generator().manual_seed(0)
    pred, other = torch.randn(2, 5, 12, generator=generator), torch.randn(2, 5, 12, generator=generator)
    mixed = 0.7 * pred + 0.3 * other
    expected = torch.stack(
        [torch.corrcoef(torch.stack([pred[n, t], mixed[n, t]]))[0, 1] for n in range(2) for t in range(5)]
    ).mean()
    assert diag.branch_alignment(pred, mixed).item() == pytest.approx(expected.item(), abs=1e-5)
    assert diag.branch_alignment(pred, 3 * pred + 1).item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("wrap", [True, False])
def test_true_neighbor_fraction_per_cnp_mode(wrap):
    model = nor_model()
    tokens = model.embed(smooth_images(n=8)).detach()
    _, _, _, ids_keep = random_masking(tokens, 0.75, torch.rand(8, 16, generator=torch.Generator().manual_seed(2)))

    def fraction(mode, use_wrap):
        torch.manual_seed(3)
        source = cnp_source_index(tokens, model.grid, mode=mode, wrap=use_wrap, positions=ids_keep)
        return true_neighbor_fraction(tokens, model.grid, source, ids_keep, wrap=use_wrap).item()

    assert fraction("paper", wrap) == 1.0
    assert fraction("random", wrap) < 0.5
    assert fraction("authors_code", True) < 1.0


def test_diagnostics_due_on_the_first_and_every_logged_step_at_least_20_apart():
    assert [diag.diagnostics_interval(n) for n in (1, 3, 4, 20, 25)] == [20, 21, 20, 20, 25]
    assert [s for s in range(45) if diag.diagnostics_due(s, 20)] == [0, 19, 39]
    assert all(diag.diagnostics_due(s, 1) for s in range(5))


@pytest.mark.slow  # keeps make test-fast under 3 minutes
def test_diagnostics_recorded_and_do_not_change_the_result(tmp_path, monkeypatch):
    monkeypatch.setattr(diag, "MIN_INTERVAL", 1)  # every logged step (at least 20 apart otherwise)
    spec = small_spec(cnp="random", log_every=3)  # the random control: its CNP draws from torch's RNG
    summary = stages.run_pretrain(spec, tmp_path / "on")
    lines = [json.loads(line) for line in (tmp_path / "on" / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if line["kind"] == "step"]
    diagnosed = [line["step"] for line in steps if "nor_grad_share" in line]
    assert diagnosed == [1, 3, 6, 9, 12, 15]  # 8 steps an epoch, 2 epochs; step 1 also gets a line
    assert [line["step"] for line in steps] == diagnosed  # every diagnosed step is a line, no others
    for line in steps:
        assert line["nor_grad_share"] > 0 and -1 <= line["branch_alignment"] <= 1
        assert 0 <= line["cnp_true_neighbor"] < 1
    first = [line["nor_grad_share"] for line in steps if line["epoch"] == 1]
    epoch_1 = next(line for line in lines if line["kind"] == "epoch")
    assert epoch_1["nor_grad_share"] == pytest.approx(sum(first) / len(first))
    kept = summary["diagnostics"]["nor_grad_share"]
    assert kept["first_epoch"] == pytest.approx(epoch_1["nor_grad_share"])
    assert kept["run_mean"] == pytest.approx(sum(line["nor_grad_share"] for line in steps) / len(steps))
    assert json.loads((tmp_path / "on" / "summary.json").read_text())["diagnostics"] == summary["diagnostics"]

    monkeypatch.setattr(diag, "diagnostics_due", lambda steps, every: False)
    off = stages.run_pretrain(spec, tmp_path / "off")
    weights_on = load_checkpoint(tmp_path / "on" / "checkpoint.pt")["model"]
    weights_off = load_checkpoint(tmp_path / "off" / "checkpoint.pt")["model"]
    assert weights_on.keys() == weights_off.keys()
    assert all(torch.equal(weights_on[k], weights_off[k]) for k in weights_on)
    losses = ("loss", "loss_rec", "loss_nor")
    assert [{k: r[k] for k in losses} for r in summary["history"]] == [
        {k: r[k] for k in losses} for r in off["history"]
    ]
    assert "nor_grad_share" not in off["final"] and "diagnostics" in off and off["diagnostics"] == {}


def test_mae_runs_carry_no_diagnostics(tmp_path):
    summary = stages.run_pretrain(small_spec(method="mae", epochs=1, warmup_epochs=0, log_every=4), tmp_path / "run")
    assert "diagnostics" not in summary and "nor_grad_share" not in summary["final"]


def test_event_files_hold_every_metrics_line(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    stages.run_pretrain(small_spec(epochs=1, warmup_epochs=0, log_every=4), tmp_path / "run")
    events = tmp_path / "run" / "events"
    assert any(path.name.startswith("events.out.tfevents") for path in events.iterdir())
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"step/loss", "step/lr", "step/nor_grad_share", "epoch/loss_rec", "epoch/branch_alignment"} <= tags
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps_logged = [line["step"] for line in lines if line["kind"] == "step"]
    assert [event.step for event in accumulator.Scalars("step/loss")] == steps_logged


def test_progress_line_format():
    assert progress_line(1, 3, 10, 64, 0.36, 54 + 2 * 64) == "epoch 1/3 step 10/64 0.36 s/step eta 0:01:06"
    assert progress_line(2, 2, 64, 64, 1.0, 0).endswith("eta 0:00:00")


def test_plain_progress_lines_say_where_and_when(tmp_path, capsys):
    stages.run_pretrain(small_spec(epochs=1, warmup_epochs=0, log_every=4), tmp_path / "run")
    lines = [line for line in capsys.readouterr().err.splitlines() if "s/step" in line]
    pattern = r"\[normae\] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d epoch 1/1 step (4|8)/8 \d+\.\d\d s/step eta \d+:\d\d:\d\d "
    assert len(lines) == 2 and all(re.match(pattern, line) for line in lines), lines


def test_without_tensorboard_no_event_files_and_one_line(tmp_path, monkeypatch, capsys):
    import sys

    from normae.training.events import EventLog

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # its import now raises ImportError
    lines = []
    events = EventLog(tmp_path / "events", rank=0, log=lines.append)
    events.start(0)
    events.write({"kind": "step", "epoch": 1, "step": 1, "loss": 1.0})
    events.close()
    assert not (tmp_path / "events").exists() and len(lines) == 1 and "tensorboard is not installed" in lines[0]
