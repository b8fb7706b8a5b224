"""Figures (normae/figures.py) and run comparison (normae/compare.py) on small hand-made inputs."""

import json

import numpy as np
import pytest
from matplotlib.image import imread

from normae.cli import main
from normae.report.compare import compare_text, epoch_curves, spec_diff

SWEEP_COLUMNS = (
    "table,row,status,model,pretrain_dataset,method,cnp,nor_variant,pretrain_epochs,patch_size,mask_ratio,"
    "lam,eval_dataset,eval,metric,paper,ours,ours_std,seeds,delta,scale,pretrain_ids,eval_ids,reason"
)


def fake_run(folder, spec, epochs, stage="pretrain", finished=True):
    """A run folder as the stages write it: spec.json, metrics.jsonl (step and epoch lines), summary.json."""
    folder.mkdir(parents=True)
    spec = {"stage": stage, **spec}
    (folder / "spec.json").write_text(json.dumps(spec))
    lines = []
    for epoch, values in enumerate(epochs, start=1):  # epochs count from 1, as the training loop writes them
        lines += [{"kind": "step", "epoch": epoch, "step": 2 * epoch + k - 1, "lr": 1e-3, **values} for k in range(2)]
        lines.append({"kind": "epoch", "epoch": epoch, "step": 2 * epoch, "lr": 1e-3, **values})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if finished:
        (folder / "summary.json").write_text(
            json.dumps({"stage": stage, "spec": spec, "final": epochs[-1], "epochs": len(epochs)})
        )
    return folder


def pretrain_spec(**changes):
    return {
        "model": "vit_micro",
        "patch_size": 2,
        "dataset": "fashion_mnist",
        "train_samples": 64,
        "epochs": 2,
        "method": "nor_mae",
        "lam": 5e-5,
        "nor_variant": "offdiag",
        "cnp": "paper",
        **changes,
    }


def losses(rec, nor):
    return [{"loss": r + 5e-5 * n, "loss_rec": r, "loss_nor": n} for r, n in zip(rec, nor)]


def assert_png_drawn(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert pixels[..., :3].std() > 0.05  # something is drawn, not a blank canvas


def test_compare_shows_exactly_the_differing_spec_fields(tmp_path, capsys):
    a = fake_run(tmp_path / "a", pretrain_spec(method="mae"), losses([0.9, 0.7], [0, 0]))
    b = fake_run(tmp_path / "b", pretrain_spec(lam=1e-4, seed=3), losses([0.9, 0.6], [-10, -11]), finished=False)
    assert spec_diff(json.loads((a / "spec.json").read_text()), json.loads((b / "spec.json").read_text())) == {
        "lam": (5e-5, 1e-4),
        "method": ("mae", "nor_mae"),
        "seed": ("-", 3),
    }
    out = tmp_path / "compare.png"
    assert main(["compare", str(a), str(b), "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    diff_block = text.split("spec fields that differ (3):\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in diff_block] == ["field", "lam", "method", "seed"]
    assert diff_block[2].split() == ["method", "mae", "nor_mae"]
    assert "an unfinished run shows its last epoch" in text
    final = {
        line.split()[0]: line.split()[1:] for line in text.split("final metrics")[1].split("\n\n")[0].splitlines()[1:]
    }
    assert final["loss_rec"][:2] == ["0.7", "0.6"] and float(final["loss_rec"][2]) == pytest.approx(-0.1)
    assert "loss_nor B" in text.split("per epoch:")[1]
    assert list(epoch_curves([a, b], ["A", "B"]).index) == [1, 2]  # metrics.jsonl's epochs, from 1, as they are
    assert_png_drawn(out)


def test_compare_of_identical_specs_says_so(tmp_path):
    a = fake_run(tmp_path / "a", pretrain_spec(), losses([0.9], [-10]))
    b = fake_run(tmp_path / "b", pretrain_spec(), losses([0.8], [-10]))
    assert "specs are identical" in compare_text(a, b)


def test_cnp_similarity_figure(tmp_path):
    stats = []
    for name, values in (("fashion_mnist", [0.2, 0.9, 0.95]), ("sklearn_samples", [0.6, 0.99, 0.999])):
        counts, edges = np.histogram(values, bins=np.linspace(-1, 1, 101))
        path = tmp_path / f"{name}.json"
        path.write_text(
            json.dumps(
                {
                    "measured": {"source": name, "images": 3, "img_size": 28, "patch_size": 4, "pixels": "raw"},
                    "mean": float(np.mean(values)),
                    "min": min(values),
                    "max": max(values),
                    "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
                    "paper": {"mean": 0.83, "min": 0.07, "max": 0.999},
                }
            )
        )
        stats.append(str(path))
    out = tmp_path / "fig3.png"
    assert main(["figure", "cnp-similarity", *stats, "--out", str(out)]) == 0
    assert_png_drawn(out)


def test_pca_figure(tmp_path):
    files = []
    for method in ("mae", "nor_mae"):
        path = tmp_path / f"{method}.npz"
        np.savez(path, coords=np.random.default_rng(0).normal(size=(40, 2)), kind=np.repeat([0, 1], 20))
        path.with_suffix(".json").write_text(
            json.dumps(
                {
                    "label": f"{method} vit_micro p2",
                    "dataset": "fashion_mnist",
                    "images": 2,
                    "visible_per_image": 10,
                    "mean_pairwise_cosine_cnp": 0.5,
                    "silhouette_visible_vs_cnp_2d": 0.1,
                    "explained_variance_ratio": [0.4, 0.2],
                }
            )
        )
        files.append(str(path))
    out = tmp_path / "pca.png"
    assert main(["figure", "pca", *files, "--labels", "MAE", "NoR-MAE", "--out", str(out)]) == 0
    assert_png_drawn(out)
    assert main(["figure", "pca", *files, "--labels", "MAE", "--out", str(out)]) == 2


def test_variants_figure(tmp_path):
    pretrain, finetune = [], []
    for i, variant in enumerate(("offdiag", "diag", "token")):
        run = fake_run(
            tmp_path / variant, pretrain_spec(nor_variant=variant), losses([1.0, 0.8 - 0.1 * i], [-10, 10 * i])
        )
        pretrain.append(str(run))
        finetune.append(
            str(
                fake_run(
                    tmp_path / f"ft-{variant}",
                    {"init": str(run), "dataset": "fashion_mnist"},
                    [{"loss": 2.0, "top1": 10.0 + i}, {"loss": 1.5, "top1": 20.0 + i}],
                    stage="finetune",
                )
            )
        )
    out = tmp_path / "fig6.png"
    assert main(["figure", "variants", *pretrain, "--finetune", *finetune, "--out", str(out)]) == 0
    assert_png_drawn(out)


def test_sweep_figure(tmp_path):
    rows = [SWEEP_COLUMNS]
    for lam, paper, ours in ((1e-5, 78.0, 20.1), (5e-5, 78.3, 20.5), (1e-4, 77.9, 19.8), (5e-4, 76.0, 19.0)):
        rows.append(
            f"T5,r,run,vit_tiny,imagenet100,nor_mae,paper,offdiag,200,16,0.75,{lam},imagenet100,finetune,top1,"
            f"{paper},{ours},0.3,2,,tiny,a,b,"
        )
    rows.append("T5,r,run,vit_tiny,imagenet100,mae,,,200,16,0.75,0,imagenet100,finetune,top1,70.24,19.5,,1,,tiny,a,b,")
    rows.append(
        "T5,r,not_run,vit_small,imagenet100,mae,,,200,16,0.75,0,imagenet100,finetune,top1,75.0,,,,,tiny,,,no stand-in"
    )
    table = tmp_path / "table5.csv"
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "t5.png"
    assert main(["figure", "sweep", str(table), "--x", "lam", "--out", str(out)]) == 0
    assert_png_drawn(out)
    assert main(["figure", "sweep", str(table), "--out", str(out)]) == 2
