"""`normae compare` (normae/report/compare.py): what a method does not use is no difference, k-NN metrics and
the noise band of each top-1 are explained, and --plot draws the per-step data."""

import json

import pytest

from normae.cli import main
from normae.report.compare import compare_figure, spec_diff, used_by_one
from normae.report.statistics import binomial_se
from normae.spec import PretrainSpec


def write_run(folder, spec, summary=None, metrics=()):
    """A run folder as the stages write it: spec.json, metrics.jsonl lines, summary.json (when finished)."""
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps(spec))
    if metrics:
        (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in metrics))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps({"spec": spec, **summary}))
    return folder


def pretrain(method, lam):
    """A complete pre-training spec as the planner writes it: an MAE spec records the default lambda, unread."""
    return {"stage": "pretrain", **PretrainSpec(method=method, lam=lam, epochs=1, warmup_epochs=0).to_dict()}


def test_a_field_the_mae_run_does_not_read_is_no_difference(tmp_path, capsys):
    mae, nor = pretrain("mae", 5e-5), pretrain("nor_mae", 2.2e-3)
    assert spec_diff(mae, nor) == {"method": ("mae", "nor_mae")}
    assert used_by_one(mae, nor) == {"lam": ("-", 2.2e-3)}
    assert spec_diff(pretrain("nor_mae", 5e-5), nor) == {"lam": (5e-5, 2.2e-3)}  # both read it: a difference
    runs = [write_run(tmp_path / name, spec, {"final": {"loss": 1.0}}) for name, spec in (("a", mae), ("b", nor))]
    assert main(["compare", *map(str, runs)]) == 0
    text = capsys.readouterr().out
    differ = text.split("spec fields that differ (1):\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in differ] == ["field", "method"]
    apart = text.split("fields only one run uses")[1].split("\n\n")[0].splitlines()[1:]
    assert [line.split() for line in apart] == [["field", "A", "B"], ["lam", "-", "0.0022"]]


def knn_summary(top1_mean, top1_cls, images):
    final = {"top1": top1_mean, "top1_mean": top1_mean, "top1_cls": top1_cls}
    return {"final": final, **final, "headline_pooling": "mean", "eval_images": images}


def test_knn_runs_show_each_top1_with_its_binomial_noise_band_and_say_what_the_poolings_are(tmp_path, capsys):
    spec = {"stage": "knn", "init": "none", "model": "vit_micro", "patch_size": 4}
    a = write_run(tmp_path / "a", spec, knn_summary(71.5, 60.0, 10000))
    b = write_run(tmp_path / "b", {**spec, "seed": 1}, knn_summary(72.0, 61.0, 2500))
    assert main(["compare", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line for line in text.split("final metrics:\n")[1].split("\n\n")[0].splitlines()}
    se_a, se_b = binomial_se(71.5, 10000), binomial_se(72.0, 2500)
    assert se_a == pytest.approx(0.4514, abs=1e-4) and se_b == pytest.approx(0.898, abs=1e-3)
    assert rows["top1"].split() == ["top1", "71.5", "±", "0.45", "72", "±", "0.9", "0.5", "±", "1"]
    assert rows["top1_cls"].split()[1:7] == ["60", "±", f"{binomial_se(60.0, 10000):.2g}", "61", "±", "0.98"]
    assert "n = the evaluation images (A 10000, B 2500)" in text
    assert "top1_cls votes with the cls token's feature" in text and "top1 is the mean pooling" in text


def test_a_finetune_comparison_without_pooling_keys_does_not_explain_them(tmp_path, capsys):
    spec = {"stage": "finetune", "init": "none"}
    runs = [write_run(tmp_path / n, spec, {"final": {"top1": 50.0}, "eval_images": 100}) for n in "ab"]
    assert main(["compare", *map(str, runs)]) == 0
    text = capsys.readouterr().out
    assert "50 ± 5" in text and "top1_cls" not in text


def test_plot_draws_every_logged_step_of_a_one_epoch_run(tmp_path):
    spec = pretrain("nor_mae", 5e-5)
    steps = [
        {"kind": "step", "epoch": 1, "step": s, "loss": 2.0 - s / 100, "nor_grad_share": 0.01}
        for s in range(20, 220, 20)
    ]
    epoch = {"kind": "epoch", "epoch": 1, "step": 210, "loss": 1.5, "nor_grad_share": 0.01, "top1": 40.0}
    runs = [write_run(tmp_path / n, spec, {"final": {}}, [*steps, epoch]) for n in "ab"]
    figure = compare_figure(*runs)
    panels = {ax.get_title(): ax for ax in figure.axes}
    assert set(panels) == {"loss", "nor_grad_share", "top1"}
    for title in ("loss", "nor_grad_share"):
        per_step = [line for line in panels[title].lines if "per step" in line.get_label()]
        assert len(per_step) == 2 and list(per_step[0].get_xdata()) == list(range(20, 220, 20))
    (top1,) = [line for line in panels["top1"].lines if line.get_label().startswith("A")]
    assert list(top1.get_xdata()) == [210] and panels["top1"].get_xlabel() == "optimiser step"
