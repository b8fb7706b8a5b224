"""The segmentation stage end to end on the Fashion-MNIST canvas stand-in: a run folder with mIoU, the
trivial floor, exact resume, the command line, and one-line errors for bad input."""

import json
import os
import signal

import pytest
import torch

from normae.cli import main
from normae.errors import CheckpointError, ConfigError
from normae.spec import SegmentSpec
from normae.stages import segment
from normae.training.signals import TrainingInterrupted

from helpers import assert_same_run

# The `pretrained` fixture (conftest.py) here: a tiny MAE pre-training run at 28 px, patch 4.
PRETRAINED = {"method": "mae", "img_size": 28}


def seg_spec(**overrides) -> SegmentSpec:
    settings = dict(
        dataset="fashion_mnist_canvas",
        model="vit_micro",
        patch_size=4,
        epochs=2,
        warmup_epochs=0.5,
        batch_size=8,
        train_samples=32,
        eval_samples=8,
        decoder_channels=16,
        eval_every=1,
        num_workers=0,
        log_every=1,
    )
    settings.update(overrides)
    return SegmentSpec(**settings)


def test_segment_from_a_pretraining_run_writes_miou_and_the_floor(pretrained, tmp_path):
    summary = segment.run_segment(seg_spec(init=str(pretrained), epochs=1), tmp_path / "run")
    assert summary["stage"] == "segment" and summary["model"] == "vit_micro" and summary["crop"] == 56
    assert 0 <= summary["miou"] <= 100 and 0 <= summary["pixel_accuracy"] <= 100
    assert len(summary["per_class_iou"]) == 11
    assert summary["init_digest"].startswith("sha256:") and summary["eval_images"] == 8
    floor = summary["trivial"]
    assert floor["majority_class_index"] == 0  # the canvases are mostly background
    assert 0 < floor["majority_class"] < 100 / 11 + 1e-6  # one class of eleven has an IoU, the rest 0 or absent
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["miou"] == summary["miou"]
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["miou"] for line in epochs if line["kind"] == "epoch"] == [summary["miou"]]


@pytest.mark.slow
def test_poly_schedule_decays_linearly_after_warm_up(tmp_path):
    summary = segment.run_segment(seg_spec(epochs=2, warmup_epochs=0.5, lr=1e-3), tmp_path / "run")
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [line["lr"] for line in lines if line["kind"] == "step"]
    # 4 steps per epoch, 2 epochs: warm-up over 2 steps, then (1 - progress) over the remaining 6
    expected = [0.0, 0.5e-3] + [1e-3 * (1 - k / 6) for k in range(6)]
    assert lrs == pytest.approx(expected)
    assert summary["optimizer_steps"] == 8


@pytest.mark.slow
def test_segment_sigterm_then_resume_equals_uninterrupted(pretrained, tmp_path, monkeypatch):
    spec = seg_spec(init=str(pretrained))
    segment.run_segment(spec, tmp_path / "straight")
    real_factory = segment.segmentation_step
    calls = {"n": 0}

    def factory(aux_weight):
        real_step = real_factory(aux_weight)

        def step(model, batch):
            calls["n"] += 1
            if calls["n"] == 6:  # mid second epoch (4 steps each), after one evaluation
                os.kill(os.getpid(), signal.SIGTERM)
            return real_step(model, batch)

        return step

    monkeypatch.setattr(segment, "segmentation_step", factory)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        segment.run_segment(spec, tmp_path / "stopped")
    assert not (tmp_path / "stopped" / "summary.json").exists()
    torch.manual_seed(999)  # whatever the process did in between: the checkpoint's RNG state wins
    segment.run_segment(spec, tmp_path / "stopped", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")
    a, b = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("straight", "stopped"))
    for key in ("miou", "pixel_accuracy", "per_class_iou", "best_miou", "trivial"):
        assert a[key] == b[key], key


def test_a_checkpoint_without_an_encoder_names_the_file(tmp_path):
    path = tmp_path / "decoder_only.pth"
    torch.save({"model": {"decoder_embed.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="decoder_only.pth"):
        segment.run_segment(seg_spec(init=str(path)), tmp_path / "run")
    assert not (tmp_path / "run" / "spec.json").exists()  # nothing left that would refuse a corrected try


def test_segment_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    options = [
        "--dataset",
        "fashion_mnist_canvas",
        "--model",
        "vit_micro",
        "--patch-size",
        "4",
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
    ]
    options += ["--batch-size", "8", "--train-samples", "16", "--eval-samples", "4", "--decoder-channels", "16"]
    assert main(["segment", "--init", "none", *options, "--num-workers", "0", "--out", str(out), "--threads", "1"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["run_dir"] == str(out) and "miou" in line
    assert (
        main(["segment", "--dataset", "ade20k", "--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a")])
        == 2
    )
    assert "ADEChallengeData2016" in capsys.readouterr().err


def test_one_crop_per_pass_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match="at least 2"):
        segment.run_segment(seg_spec(batch_size=1), tmp_path / "run")
    assert not (tmp_path / "run" / "spec.json").exists()
