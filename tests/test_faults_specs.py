"""Fault cases about specs and upstreams (issue 11: High 1, Medium 4, Medium 8).

- An evaluation records the digest of the pre-training checkpoint it started from; a resume after
  that checkpoint changed starts afresh instead of answering with the stale result.
- Every spec field is checked against its type, with the field named.
- Bad values are refused at the spec check, before a run folder exists; a check that can only fail
  after spec.json is written takes spec.json back, so a corrected try may use the same --out.
"""

import hashlib
import json
import shutil

import pytest
import torch

from normae.cli import main
from normae.cluster.launch import launch
from normae.errors import CheckpointError, ConfigError
from normae.paths import RunFolder
from normae.spec import FinetuneSpec, LinprobeSpec, PretrainSpec, load_spec, spec_from_dict
from normae.stages import transfer

from helpers import final_weights, pretrain_run, write_spec


def evaluation(init, **overrides) -> FinetuneSpec:
    settings = dict(
        init=str(init),
        dataset="generated",
        train_samples=16,
        eval_samples=16,
        model="vit_micro",
        patch_size=4,
        img_size=16,
        epochs=1,
        warmup_epochs=0,
        batch_size=8,
        amp="none",
        num_workers=0,
        checkpoint_minutes=0,
        log_every=1,
    )
    return FinetuneSpec(**{**settings, **overrides})


def sha256(path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- High 1: a stale evaluation


def test_an_evaluation_restarts_when_its_pretraining_run_was_trained_again(tmp_path, capsys):
    run_a = pretrain_run(tmp_path / "A", train_samples=16)
    other = pretrain_run(
        tmp_path / "other", train_samples=16, seed=1
    )  # other weights, as a re-training of A would give
    spec_path = write_spec(tmp_path, evaluation(run_a / RunFolder.CHECKPOINT))
    evaluated = RunFolder(tmp_path / "eval")
    assert launch(spec_path, evaluated.path) == 0
    first = evaluated.require_summary()
    first_weights = final_weights(evaluated.path)
    assert first["init_digest"] == sha256(run_a / RunFolder.CHECKPOINT)

    # A is trained again under the same id; Snakemake then deletes the evaluation's summary and relaunches it.
    shutil.copyfile(other / RunFolder.CHECKPOINT, run_a / RunFolder.CHECKPOINT)
    evaluated.summary_path.unlink()
    capsys.readouterr()
    assert launch(spec_path, evaluated.path) == 0
    log = capsys.readouterr().err
    assert "starting afresh" in log and sha256(run_a / RunFolder.CHECKPOINT) in log

    fresh = RunFolder(tmp_path / "fresh")
    assert launch(spec_path, fresh.path) == 0
    again = evaluated.require_summary()
    assert again["init_digest"] == fresh.require_summary()["init_digest"] == sha256(run_a / RunFolder.CHECKPOINT)
    assert again["init_digest"] != first["init_digest"]
    for key in ("final", "history", "optimizer_steps", "top1", "best_top1"):
        assert again[key] == fresh.require_summary()[key], key
    weights, fresh_weights = final_weights(evaluated.path), final_weights(fresh.path)
    assert all(torch.equal(weights[k], fresh_weights[k]) for k in weights)
    assert not all(torch.equal(weights[k], first_weights[k]) for k in weights)  # the stale result did not survive
    assert evaluated.metrics_path.read_text() == fresh.metrics_path.read_text()

    # An unchanged upstream resumes as before: the finished checkpoint answers, nothing is trained.
    evaluated.summary_path.unlink()
    capsys.readouterr()
    assert launch(spec_path, evaluated.path) == 0
    assert "starting afresh" not in capsys.readouterr().err
    assert evaluated.require_summary()["final"] == again["final"]


# ---------------------------------------------------------------- Medium 4: spec types


@pytest.mark.parametrize(
    "stage, field, value, expected",
    [
        ("pretrain", "cnp_wrap", "no", 'cnp_wrap must be true or false, got "no"'),
        ("pretrain", "epochs", 1.5, "epochs must be an integer, got 1.5"),
        ("pretrain", "epochs", True, "epochs must be an integer, got true"),
        ("pretrain", "lam", "5e-5", 'lam must be a finite number, got "5e-5"'),
        ("pretrain", "mask_ratio", None, "mask_ratio must be a finite number, got null"),
        ("pretrain", "train_samples", 64.0, "train_samples must be an integer or null, got 64.0"),
        (
            "pretrain",
            "method",
            "simclr",
            'method must be one of "mae", "nor_mae", "sup_mae", "sup_nor_mae", "dmae", "nor_dmae", got "simclr"',
        ),
        ("pretrain", "data_root", ["data"], 'data_root must be a string or null, got ["data"]'),
        ("finetune", "download", "yes", 'download must be true or false, got "yes"'),
        ("finetune", "clip_grad", "inf", 'clip_grad must be a finite number or null, got "inf"'),
        ("linprobe", "amp", "fp8", 'amp must be one of "auto", "bf16", "fp16", "none", got "fp8"'),
    ],
)
def test_every_spec_field_is_checked_against_its_type(tmp_path, stage, field, value, expected):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"stage": stage, field: value}))
    with pytest.raises(ConfigError) as error:
        load_spec(path)
    assert str(path) in str(error.value) and expected in str(error.value)


def test_types_are_checked_without_changing_valid_specs(tmp_path, capsys):
    # Ints are numbers and stay ints: a valid spec keeps its digest (lam 0 and lam 0.0 stay apart, as before).
    assert spec_from_dict({"lam": 0, "method": "mae"}).to_dict()["lam"] == 0
    assert (
        spec_from_dict({"lam": 0, "method": "mae"}).digest() != spec_from_dict({"lam": 0.0, "method": "mae"}).digest()
    )
    assert (
        spec_from_dict({"warmup_epochs": 1, "epochs": 2}).digest() == PretrainSpec(warmup_epochs=1, epochs=2).digest()
    )
    # The command line reports a wrong type in one line and leaves no run folder.
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"cnp_wrap": "no"}))
    assert main(["pretrain", "--spec", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cnp_wrap must be true or false" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_plans_specs_read_back_with_the_same_digest(tiny_plan):
    for spec in [*tiny_plan.pretrain.values(), *tiny_plan.evaluations.values()]:
        again = spec_from_dict(json.loads(spec.to_json()))
        assert again == spec and again.digest() == spec.digest()


# ---------------------------------------------------------------- Medium 8: bad values


def test_init_from_an_unfinished_pretraining_run_is_refused(tmp_path):
    run_a = pretrain_run(tmp_path / "A", train_samples=16)
    RunFolder(run_a).summary_path.unlink()  # stopped, or still training: its checkpoint is some epoch of it
    for init in (run_a, run_a / RunFolder.CHECKPOINT):
        out = tmp_path / "eval"
        with pytest.raises(CheckpointError, match=f"{run_a} is an unfinished run"):
            transfer.run_transfer(evaluation(init), out)
        assert not out.exists()
    # A foreign checkpoint file in a plain folder (no spec.json) is no run: it is used as it is.
    foreign = tmp_path / "public" / "mae.pth"
    foreign.parent.mkdir()
    torch.save({"model": final_weights(run_a)}, foreign)
    summary = transfer.run_transfer(evaluation(foreign), tmp_path / "from-foreign")
    assert summary["init_digest"] == sha256(foreign)


@pytest.mark.parametrize(
    "spec_class, settings, expected",
    [
        (FinetuneSpec, {"eval_samples": 0}, "eval_samples must be at least 1, got 0"),
        (LinprobeSpec, {"eval_batch_size": 0}, "eval_batch_size must be at least 1, got 0"),
        (PretrainSpec, {"lam": -1e-4}, "lam must be at least 0, got -0.0001"),
        (PretrainSpec, {"mask_ratio": 0.0}, "mask_ratio must be in (0, 1)"),
        (PretrainSpec, {"mask_ratio": -0.5}, "mask_ratio must be in (0, 1)"),
        # 16 px at patch 4: 16 patches; 0.95 would keep int(0.8) = 0 of them.
        (PretrainSpec, {"img_size": 16, "patch_size": 4, "mask_ratio": 0.95}, "leaves no visible patch of the 16"),
        (PretrainSpec, {"mask_ratio": 1e-17}, "removes no patch"),
        (PretrainSpec, {"train_samples": -1}, "train_samples must be at least 1, got -1"),
        (PretrainSpec, {"train_samples": 8, "batch_size": 64}, "cannot fill one step"),
        (PretrainSpec, {"img_size": 0}, "img_size must be at least 1, got 0"),
        (PretrainSpec, {"patch_size": 0, "img_size": 28}, "patch_size must be at least 1, got 0"),
        (PretrainSpec, {"num_workers": -1}, "num_workers must be at least 0"),
        (PretrainSpec, {"blr": 0.0}, "blr must be positive"),
        (PretrainSpec, {"clip_grad": -1.0}, "clip_grad must be positive"),
        (PretrainSpec, {"weight_decay": -0.1}, "weight_decay must be at least 0"),
        (PretrainSpec, {"checkpoint_minutes": -1.0}, "checkpoint_minutes must be at least 0"),
        (PretrainSpec, {"dataset": "cifar10"}, "dataset must be one of"),
        (FinetuneSpec, {"dataset": "imagenet1k_typo"}, "dataset must be one of"),
        (FinetuneSpec, {"layer_decay": 0.0}, "layer_decay must be in (0, 1]"),
        (FinetuneSpec, {"drop_path": 1.0}, "drop_path must be in [0, 1)"),
        (FinetuneSpec, {"smoothing": -0.1}, "smoothing must be in [0, 1)"),
        (FinetuneSpec, {"mixup": -1.0}, "mixup must be at least 0"),
        (FinetuneSpec, {"init": ""}, "init must be"),
    ],
)
def test_bad_values_are_refused_at_the_spec_check(tmp_path, spec_class, settings, expected):
    with pytest.raises(ConfigError) as error:
        spec_class(**settings)
    assert expected in str(error.value)
    # Also when read from a file, the field named, before any run folder exists.
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"stage": spec_class.stage, **settings}))
    command = "pretrain" if spec_class is PretrainSpec else spec_class.stage
    assert main([command, "--spec", str(path), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_failed_check_leaves_nothing_that_blocks_the_corrected_try(tmp_path, capsys):
    out = tmp_path / "run"
    options = ["--model", "vit_micro", "--img-size", "16", "--patch-size", "4", "--epochs", "1"]
    options += ["--warmup-epochs", "0", "--batch-size", "8", "--train-samples", "16", "--num-workers", "0"]
    # Data not found: only known after the folder is taken and spec.json written.
    missing = ["--dataset", "imagenet100", "--data-root", str(tmp_path / "no-imagenet")]
    assert main(["pretrain", *options, *missing, "--out", str(out)]) == 2
    assert "normae pretrain: error: " in capsys.readouterr().err
    assert not RunFolder(out).spec_path.exists()
    assert not any(path.name in {"spec.json", "metrics.jsonl", "checkpoint.pt"} for path in out.rglob("*"))
    # The corrected spec (another digest) runs in the same folder.
    assert main(["pretrain", *options, "--dataset", "generated", "--out", str(out)]) == 0
    assert RunFolder(out).is_finished()
    # Once training has started, the folder belongs to its spec.
    assert main(["pretrain", *options, *missing, "--out", str(out)]) == 2
    assert "holds another run" in capsys.readouterr().err


# ---- issue 24: n91 (a seed past what the generators take), n93 (--threads 0), n78 (nor-share --images 0) ----
@pytest.mark.parametrize("stage", ["pretrain", "finetune", "linprobe", "knn", "segment", "bench"])
@pytest.mark.parametrize("seed", [2**70, 2**32, -1])
def test_every_stages_seed_is_checked_before_a_run_folder_exists(tmp_path, capsys, stage, seed):
    """n91: a seed of 2**70 failed inside torch after the run folder was locked (and left .training.lock)."""
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"stage": stage, "seed": seed}))
    with pytest.raises(ConfigError, match=rf"seed must be in \[0, 2\*\*32\), got {seed}"):
        load_spec(path)
    command = "launch" if stage == "bench" else stage  # bench takes options, no --spec
    assert main([command, "--spec", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seed must be in" in err and not (tmp_path / "run").exists()


def test_the_largest_seed_is_accepted():
    assert PretrainSpec(seed=2**32 - 1).seed == 2**32 - 1


def test_threads_below_one_are_one_line_before_a_run_folder_exists(tmp_path, capsys):
    """n93: --threads 0 was a ValueError traceback from set_threads."""
    assert main(["pretrain", "--dataset", "generated", "--threads", "0", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "threads must be at least 1, got 0" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "count, seeds, expected",
    [(0, (0, 1), "--images must be at least 1, got 0"), (8, (), "--probe-seeds must name at least one seed")],
)
def test_nor_share_refuses_no_images_or_no_seeds_in_one_line(count, seeds, expected):
    """n78: `normae nor-share --images 0` failed deep in torch with a traceback."""
    from normae.analysis.nor_share import measure_share
    from normae.experiments.faithful import Geometry

    with pytest.raises(ConfigError, match=expected) as error:
        measure_share(Geometry("vit_micro", 16, 4), count, seeds)
    assert "\n" not in str(error.value)
