"""Figures (normae/report/figures.py, sweep_figures.py) and run comparison (compare.py) on small inputs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from normae.cli import main
from normae.errors import ConfigError
from normae.experiments.plan import expand, load_experiments, load_scale, read_reported
from normae.report.compare import compare_text, epoch_curves, spec_diff
from normae.report.figures import cnp_similarity_axes, pca_axes, pca_titles, variants_axes
from normae.report.pull_figure import pull_axes, pull_curves, pull_figure, share_ratio
from normae.report.sweep_figures import evidence_axes, sweep_axes


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
        "method": ("mae", "nor_mae"),  # lambda: MAE does not read it (tests/test_compare.py)
        "seed": ("-", 3),
    }
    out = tmp_path / "compare.png"
    assert main(["compare", str(a), str(b), "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    diff_block = text.split("spec fields that differ (2):\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in diff_block] == ["field", "method", "seed"]
    assert diff_block[1].split() == ["method", "mae", "nor_mae"]
    assert "an unfinished run shows its last epoch" in text
    final = {
        line.split()[0]: line.split()[1:] for line in text.split("final metrics")[1].split("\n\n")[0].splitlines()[1:]
    }
    assert final["loss_rec"][:2] == ["0.7", "0.6"] and float(final["loss_rec"][2]) == pytest.approx(-0.1)
    assert "loss_nor B" in text.split("per epoch:")[1]
    assert list(epoch_curves([a, b], ["A", "B"]).index) == [1, 2]  # metrics.jsonl's epochs, from 1, as they are
    assert_png_drawn(out)


def test_compare_of_two_knn_runs_shows_their_top1_without_curves(tmp_path):
    """A k-NN evaluation is one pass: it writes no metrics.jsonl, and compare reads its summary alone."""
    runs = []
    for name, top1 in (("a", 71.5), ("b", 72.0)):
        folder = fake_run(tmp_path / name, {"init": f"pre/{name}", "k": 20}, [{"top1": top1}], stage="knn")
        (folder / "metrics.jsonl").unlink()
        runs.append(folder)
    text = compare_text(*runs)
    assert "init" in text and "top1" in text and "0.5" in text
    unfinished = fake_run(tmp_path / "c", {"init": "pre/c"}, [{"top1": 1.0}], stage="knn", finished=False)
    (unfinished / "metrics.jsonl").unlink()
    with pytest.raises(Exception, match="has not logged anything"):
        compare_text(runs[0], unfinished)


def test_compare_of_identical_specs_says_so(tmp_path):
    a = fake_run(tmp_path / "a", pretrain_spec(), losses([0.9], [-10]))
    b = fake_run(tmp_path / "b", pretrain_spec(), losses([0.8], [-10]))
    assert "specs are identical" in compare_text(a, b)


def texts(artists):
    return [artist.get_text() for artist in artists]


def assert_covers_nothing(fig, legend, *others):
    """``legend`` overlaps no axes of ``fig`` and none of ``others`` (texts drawn on an axes)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    for artist in [*fig.axes, *others]:
        assert not box.overlaps(artist.get_window_extent(renderer)), artist


def cnp_stats(tmp_path):
    """Two cnp-stats JSONs (the paper's mean / min / max in each); their paths and histograms."""
    stats, histograms = [], []
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
        histograms.append((counts, edges, values))
    return stats, histograms


def test_cnp_similarity_figure(tmp_path):
    stats, histograms = cnp_stats(tmp_path)
    fig = cnp_similarity_axes(stats)
    (ax,) = fig.axes
    for patch, (counts, edges, _) in zip(ax.patches, histograms, strict=True):
        values, drawn_edges, _ = patch.get_data()
        assert np.allclose(values, counts / counts.sum()) and np.allclose(drawn_edges, edges)
    means = [float(np.mean(values)) for _, _, values in histograms]
    assert [line.get_xdata()[0] for line in ax.get_lines()] == pytest.approx([*means, 0.83, 0.07, 0.999])
    assert texts(ax.texts) == ["paper mean 0.83", "paper min 0.07", "paper max 0.999"]
    assert texts(ax.get_legend().get_texts()) == [
        "fashion_mnist, 3 images, 28 px, patch 4, raw pixels: mean 0.683, min 0.200, max 0.950",
        "sklearn_samples, 3 images, 28 px, patch 4, raw pixels: mean 0.863, min 0.600, max 0.999",
    ]
    assert ax.get_title().startswith("Figure 3: patch vs closest-neighbour cosine")
    assert_covers_nothing(fig, ax.get_legend(), *ax.texts)  # the legend hid "paper min" once
    out = tmp_path / "fig3.png"
    assert main(["figure", "cnp-similarity", *stats, "--out", str(out)]) == 0
    assert_png_drawn(out)


def pca_files(tmp_path, count):
    """``count`` normae pca outputs (.npz and .json), each of its own points; their paths and coordinates."""
    files, coords = [], []
    for i in range(count):
        path = tmp_path / f"pca{i}.npz"
        points = np.random.default_rng(i).normal(size=(40, 2)) + i
        np.savez(path, coords=points, kind=np.repeat([0, 1], 20))
        path.with_suffix(".json").write_text(
            json.dumps(
                {
                    "label": f"run {i} vit_micro p2",
                    "dataset": "fashion_mnist",
                    "images": 2,
                    "visible_per_image": 10,
                    "mean_pairwise_cosine_cnp": 0.5 + i / 100,
                    "silhouette_visible_vs_cnp_2d": 0.1,
                    "explained_variance_ratio": [0.4, 0.2],
                }
            )
        )
        files.append(str(path))
        coords.append(points)
    return files, coords


def test_pca_figure(tmp_path):
    """Five panels (Figure 7 at the tiny scale) in a grid of three columns, each its own title and points."""
    files, coords = pca_files(tmp_path, 5)
    labels = [f"vit_{name} (ran vit_mini), nor_mae, seed 0" for name in ("tiny", "small", "base", "large", "huge")]
    fig = pca_axes(files, labels)
    assert len(fig.axes) == 5 and {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes} == {(2, 3)}
    width, height = fig.get_size_inches()
    assert width / height < 2  # not a strip of five
    for i, ax in enumerate(fig.axes):
        title = ax.get_title().splitlines()
        assert title == [
            labels[i],
            "fashion_mnist, 2 images x 10 visible",
            f"CNP pairwise cos {0.5 + i / 100:.3f}, silhouette 0.100",
        ]
        visible, cnp = ax.collections
        assert np.allclose(visible.get_offsets(), coords[i][:20]) and np.allclose(cnp.get_offsets(), coords[i][20:])
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("PC1 (40%)", "PC2 (20%)")
    (legend,) = fig.legends
    assert texts(legend.get_texts()) == ["visible patches", "closest neighbour patches"]
    assert_covers_nothing(fig, legend, *(ax.title for ax in fig.axes))
    assert [ax.get_title().splitlines()[0] for ax in pca_axes(files[:2]).axes] == [
        "run 0 vit_micro p2",
        "run 1 vit_micro p2",
    ]
    out = tmp_path / "pca.png"
    assert main(["figure", "pca", *files[:2], "--labels", "MAE", "NoR-MAE", "--out", str(out)]) == 0
    assert main(["figure", "pca", *files[:2], "--labels", "MAE", "--out", str(out)]) == 2


def test_pca_titles_name_the_papers_model_and_what_ran():
    """At the tiny scale ViT-Small and ViT-Base both run vit_mini: their panels were once both titled
    'vit_mini nor_mae seed 0'; one MAE run stands in for both models."""
    config = Path(__file__).parents[1] / "config"
    plan = expand(
        load_experiments(config / "experiments.yaml"),
        load_scale("tiny", config),
        read_reported(config / "reported.csv"),
        seeds=[0],
    )
    titles = pca_titles(plan.tables["F7"], plan)
    assert sorted(titles.values()) == [
        "vit_base (ran vit_mini), nor_mae lam 0.0022, seed 0",
        "vit_small (ran vit_mini), nor_mae lam 0.00495, seed 0",
        "vit_small, vit_base (ran vit_mini), mae, seed 0",
        "vit_tiny (ran vit_micro), mae, seed 0",
        "vit_tiny (ran vit_micro), nor_mae lam 0.0022, seed 0",
    ]


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
    fig = variants_axes(pretrain, finetune[::-1])  # the fine-tuning runs in another order: colours follow the variant
    rec, nor, top1 = fig.axes
    names = ["nor_mae offdiag", "nor_mae diag", "nor_mae token"]
    for i, (rec_line, nor_line) in enumerate(zip(rec.get_lines(), nor.get_lines(), strict=True)):
        assert list(rec_line.get_xdata()) == [1, 2, 3, 4]  # fake_run's optimiser steps
        assert list(rec_line.get_ydata()) == pytest.approx([1.0, 1.0, 0.8 - 0.1 * i, 0.8 - 0.1 * i])
        assert list(nor_line.get_ydata()) == [-10, -10, 10 * i, 10 * i]
        assert rec_line.get_label() == nor_line.get_label() == names[i]
    colour = {line.get_label(): line.get_color() for line in rec.get_lines()}
    for line in top1.get_lines():
        i = names.index(line.get_label())
        assert list(line.get_xdata()) == [1, 2] and list(line.get_ydata()) == [10.0 + i, 20.0 + i]
        assert line.get_color() == colour[line.get_label()]
    assert [ax.get_title() for ax in fig.axes] == [
        "pre-training reconstruction loss",
        "pre-training NoR term (before lambda)",
        "fine-tuning top-1 on the evaluation split",
    ]
    assert [ax.get_xlabel() for ax in fig.axes] == ["optimiser step", "optimiser step", "fine-tuning epoch"]
    (legend,) = fig.legends
    assert texts(legend.get_texts()) == names
    assert_covers_nothing(fig, legend)
    assert "vit_micro p2 on fashion_mnist (64 images), 2 epochs" in fig.get_suptitle()
    out = tmp_path / "fig6.png"
    assert main(["figure", "variants", *pretrain, "--finetune", *finetune, "--out", str(out)]) == 0
    assert_png_drawn(out)


LAMBDAS = (1e-5, 5e-5, 1e-4, 5e-4)


def lambda_table(tmp_path):
    """Table 5's shape: ViT-Tiny and ViT-Small, MAE and NoR-MAE at four lambdas, the tiny scale multiplying
    lambda by 44 for ViT-Tiny and 99 for ViT-Small (the run ids say so); ViT-Small's largest lambda not run."""
    rows = []
    for model, factor, base in (("vit_tiny", 44, 20.0), ("vit_small", 99, 30.0)):
        rows.append({"model": model, "method": "mae", "lam": 0, "paper": base + 50, "ours": base, "ours_se": 1.0})
        rows[-1]["pretrain_ids"] = "fmnist-vit_micro-p4-mae-mr0.75-ep1-s0-abcdef12"
        for k, lam in enumerate(LAMBDAS):
            rows.append({"model": model, "method": "nor_mae", "cnp": "paper", "lam": lam, "paper": base + 55 + k})
            rows[-1].update(
                ours=base + 1 + k,
                ours_se=1.0,
                pretrain_ids=f"fmnist-vit_micro-p4-nor_mae-lam{lam * factor:g}-mr0.75-ep1-s0-abcdef12",
            )
    for row in rows:
        row.update(table="T5", status="run", metric="top1", seeds=1, scale="tiny")
    rows[-1].update(status="not_run", ours=None, ours_se=None, pretrain_ids=None)
    path = tmp_path / "table5.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_sweep_figure_says_what_each_series_ran(tmp_path):
    """Table 5: the ticks once said ViT-Small's lambda under ViT-Tiny's series; now a table says each one's."""
    fig = sweep_axes(lambda_table(tmp_path), "lam")
    paper_ax, ours_ax, table_ax = fig.axes
    for ax in (paper_ax, ours_ax):
        assert texts(ax.get_xticklabels()) == ["1e-05", "5e-05", "0.0001", "0.0005"]
        assert ax.get_xscale() == "log"
    assert "the table below" in ours_ax.get_xlabel()
    cells = {key: cell.get_text().get_text() for key, cell in table_ax.tables[0].get_celld().items()}
    assert [cells[(0, c)] for c in range(4)] == [f"paper {lam:g}" for lam in LAMBDAS]
    assert [cells[(r, -1)] for r in (1, 2)] == ["vit_small, nor_mae, cnp paper", "vit_tiny, nor_mae, cnp paper"]
    assert [cells[(1, c)] for c in range(4)] == ["0.00099", "0.00495", "0.0099", "-"]
    assert [cells[(2, c)] for c in range(4)] == ["0.00044", "0.0022", "0.0044", "0.022"]
    series = {c.get_label(): c.lines[0] for c in ours_ax.containers}
    assert list(series["vit_tiny, nor_mae, cnp paper"].get_ydata()) == [21.0, 22.0, 23.0, 24.0]
    assert list(series["vit_small, nor_mae, cnp paper"].get_ydata()) == [
        31.0,
        32.0,
        33.0,
    ]  # the row not run is not drawn
    for line in series.values():
        assert np.allclose(np.log10(line.get_xdata()), np.log10(LAMBDAS[: len(line.get_xdata())]), atol=0.1)
    paper = {c.get_label(): list(c.lines[0].get_ydata()) for c in paper_ax.containers}
    assert paper == {
        "vit_small, nor_mae, cnp paper": [85.0, 86.0, 87.0, 88.0],
        "vit_tiny, nor_mae, cnp paper": [75.0, 76.0, 77.0, 78.0],
    }
    mae = {line.get_label(): line.get_ydata()[0] for line in ours_ax.get_lines() if "mae (" in line.get_label()}
    assert mae == {"vit_small, mae (lam 0)": 30.0, "vit_tiny, mae (lam 0)": 20.0}
    for ax in (paper_ax, ours_ax):
        assert set(texts(ax.get_legend().get_texts())) == {*series, *mae}
        assert_covers_nothing(fig, ax.get_legend())
    assert (paper_ax.get_title(), ours_ax.get_title()) == (
        "the paper's values",
        "ours; one seed: bars ± binomial standard error over the evaluation images",
    )
    assert main(["figure", "sweep", str(tmp_path / "table5.csv"), "--out", str(tmp_path / "t5.png")]) == 2


def plotted_points(ax):
    """Every (x, y) drawn as a data point (marker and line) on ``ax``."""
    lines = [container.lines[0] for container in ax.containers]
    return [(float(x), float(y)) for line in lines for x, y in zip(line.get_xdata(), line.get_ydata())]


def bar_spans(ax):
    """(low, high) of every vertical error bar drawn on ``ax``."""
    return [
        (float(seg[:, 1].min()), float(seg[:, 1].max()))
        for container in ax.containers
        for bars in container.lines[2]
        for seg in bars.get_segments()
    ]


def epochs_table(tmp_path, seeds):
    """Table 7's shape: MAE and NoR-MAE at 200 / 1000 / 1600 epochs (ran 1 / 2 / 3), one row not run,
    one row without a paper number."""
    rows = []
    for method, cnp, lam, base in (("mae", None, None, 20.0), ("nor_mae", "paper", 5e-5, 20.4)):
        for k, (epochs, paper) in enumerate(((200, 71.0), (1000, 73.2), (1600, 74.3))):
            ours = base - 0.3 * k
            several = seeds > 1
            rows.append(
                {
                    "table": "T7",
                    "row": len(rows),
                    "status": "run",
                    "method": method,
                    "cnp": cnp,
                    "pretrain_epochs": epochs,
                    "lam": lam,
                    "metric": "top1",
                    "paper": paper + 5 * (method == "nor_mae") if k < 2 or method == "mae" else None,
                    "ours": ours,
                    "ours_low": ours - 1.5 if several else None,
                    "ours_high": ours + 1.5 if several else None,
                    "ours_se": None if several else 2.3,
                    "seeds": seeds,
                    "scale": "tiny",
                    "pretrain_ids": f"fmnist-vit_micro-p4-{method}-mr0.75-ep{k + 1}-s0-abcdef12",
                }
            )
    rows.append({**rows[-1], "row": len(rows), "status": "not_run", "cnp": "authors_code", "ours": None})
    rows[-1].update(paper=80.0, ours_se=None, pretrain_ids=None)
    path = tmp_path / "table7.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_sweep_figure_of_one_seed_keeps_every_error_bar_in_view(tmp_path):
    table = epochs_table(tmp_path, seeds=1)
    fig = sweep_axes(table, "pretrain_epochs")
    paper_ax, ours_ax = fig.axes
    low, high = ours_ax.get_ylim()
    spans = bar_spans(ours_ax)
    assert len(spans) == 6  # the six runs; the not-run row has no bar
    assert all(low <= a and b <= high for a, b in spans)
    assert min(a for a, _ in spans) == pytest.approx(19.4 - 2.3) and max(b for _, b in spans) == pytest.approx(22.7)
    assert [t.get_text() for t in ours_ax.get_xticklabels()] == ["200\n(ran 1)", "1000\n(ran 2)", "1600\n(ran 3)"]
    assert [t.get_text() for t in paper_ax.get_xticklabels()] == ["200", "1000", "1600"]
    # categorical positions (200, 1000, 1600 are not evenly spaced), no NaN drawn, no blank drawn as 0
    for ax, count in ((paper_ax, 6), (ours_ax, 6)):
        points = plotted_points(ax)
        assert len(points) == count and np.isfinite(points).all()
        assert all(-0.5 < x < 2.5 for x, _ in points) and min(y for _, y in points) > 15
    assert "one seed" in ours_ax.get_title()
    out = tmp_path / "t7.png"
    assert main(["figure", "sweep", str(table), "--x", "pretrain_epochs", "--out", str(out)]) == 0
    assert_png_drawn(out)


def test_sweep_figure_draws_the_interval_over_seeds(tmp_path):
    fig = sweep_axes(epochs_table(tmp_path, seeds=3), "pretrain_epochs")
    spans = bar_spans(fig.axes[1])
    assert sorted(round(b - a, 6) for a, b in spans) == [3.0] * 6
    assert "95 %" in fig.axes[1].get_title()


def evidence_table(tmp_path, share=None):
    """The evidence table: random init, MAE, NoR-MAE with three CNP modes at 5e-5, the paper's CNP at
    three larger lambdas."""
    rows = [{"method": "random_init", "ours": 8.0}, {"method": "mae", "ours": 20.0}]
    for cnp, lam, gain in (("paper", 5e-5, 0.3), ("authors_code", 5e-5, -0.2), ("random", 5e-5, 0.1)):
        rows.append({"method": "nor_mae", "cnp": cnp, "lam": lam, "gain_ours": gain, "gain_paper": 7.2})
    for lam, gain in ((5e-4, -0.5), (5e-3, -2.0), (5e-2, -6.0)):
        rows.append({"method": "nor_mae", "cnp": "paper", "lam": lam, "gain_ours": gain})
    for row in rows:
        row.update(table="EV", metric="top1", seeds=3, pretrain_ids=None)
        if "gain_ours" in row:  # the scale ran lambda x 10 (the run id says so)
            row.update(gain_low=row["gain_ours"] - 1, gain_high=row["gain_ours"] + 1)
            row["pretrain_ids"] = f"fmnist-vit_micro-p4-nor_mae-lam{10 * row['lam']:g}-mr0.75-ep1-s0-abcdef12"
            if share is not None:
                row["nor_grad_share"] = share * row["lam"] / 5e-5 if share else None
    path = tmp_path / "evidence.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("share", [None, 0, 0.01])
def test_evidence_figure(tmp_path, share):
    table = evidence_table(tmp_path, share)
    fig = evidence_axes(table)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert len(fig.axes) == (2 if share else 1)  # the share's axis only where the CSV has values
    if share:
        assert fig.axes[1].get_yscale() == "log"
    series = {c.get_label(): c.lines[0] for c in ax.containers}
    assert set(series) == {"ours, CNP paper", "ours, CNP authors_code", "ours, CNP random"}
    assert len(series["ours, CNP paper"].get_xdata()) == 4 and series["ours, CNP paper"].get_linestyle() == "-"
    singles = [series[f"ours, CNP {c}"].get_xdata()[0] for c in ("authors_code", "random")]
    assert series["ours, CNP paper"].get_xdata()[0] not in singles and all(4e-5 < x < 6e-5 for x in singles)
    assert any(np.allclose(line.get_ydata(), 0) for line in ax.get_lines())  # the line at 0
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["5e-05\n(ran 0.0005)", "0.0005\n(ran 0.005)"]
    assert "seeds: 3 per row" in fig.get_suptitle()
    assert list(series["ours, CNP paper"].get_ydata()) == [0.3, -0.5, -2.0, -6.0]
    assert [list(series[f"ours, CNP {c}"].get_ydata()) for c in ("authors_code", "random")] == [[-0.2], [0.1]]
    (crosses,) = [c for c in ax.collections if c.get_label() == "the paper's gain"]
    assert crosses.get_offsets().tolist() == [[5e-5, 7.2]]  # the paper's gain, once per lambda
    legend = ax.get_legend()
    shares = [f"nor_grad_share, CNP {cnp} (right axis)" for cnp in ("paper", "authors_code", "random")] if share else []
    assert texts(legend.get_texts()) == ["the paper's gain", *series, *shares]
    assert_covers_nothing(fig, legend)
    out = tmp_path / "evidence.png"
    assert main(["figure", "evidence", str(table), "--out", str(out)]) == 0
    assert_png_drawn(out)


def test_evidence_figure_draws_a_table_where_series_ran_different_lambdas(tmp_path):
    frame = pd.read_csv(evidence_table(tmp_path))
    random = frame["cnp"] == "random"
    frame.loc[random, "pretrain_ids"] = frame.loc[random, "pretrain_ids"].str.replace("-lam0.0005-", "-lam0.001-")
    path = tmp_path / "ran.csv"
    frame.to_csv(path, index=False)
    fig = evidence_axes(path)
    ax, table_ax = fig.axes
    assert texts(ax.get_xticklabels()) == ["5e-05", "0.0005", "0.005", "0.05"]
    cells = {key: cell.get_text().get_text() for key, cell in table_ax.tables[0].get_celld().items()}
    assert [cells[(r, -1)] for r in (1, 2, 3)] == ["ours, CNP authors_code", "ours, CNP paper", "ours, CNP random"]
    assert [cells[(r, 0)] for r in (1, 2, 3)] == ["0.0005", "0.0005", "0.001"]
    assert [cells[(3, c)] for c in (1, 2, 3)] == ["-", "-", "-"]


def test_evidence_figure_draws_a_panel_per_protocol(tmp_path):
    """The paper scale's decisive experiment scores every run three ways: one panel each, its own series."""
    frame = pd.read_csv(evidence_table(tmp_path))
    frames = [frame.assign(eval=protocol) for protocol in ("finetune", "linprobe", "knn")]
    frames[0] = frames[0][~(frames[0]["lam"] > 5e-5)]  # the sweep past the paper's range: k-NN only
    path = tmp_path / "protocols.csv"
    pd.concat(frames).to_csv(path, index=False)
    fig = evidence_axes(path)
    assert [ax.get_title() for ax in fig.axes] == ["scored by finetune", "scored by linprobe", "scored by knn"]
    paper_cnp = [{c.get_label(): c.lines[0] for c in ax.containers}["ours, CNP paper"] for ax in fig.axes]
    assert [len(line.get_xdata()) for line in paper_cnp] == [1, 4, 4]


def pull_run(folder, lam, seed, shares, epochs=1, steps_per_epoch=40, cnp="paper"):
    """A NoR-MAE run whose diagnosed steps (every 20th) carry the given nor_grad_share values."""
    folder.mkdir(parents=True)
    spec = {**pretrain_spec(lam=lam, cnp=cnp, epochs=epochs, seed=seed), "stage": "pretrain", "img_size": 28}
    (folder / "spec.json").write_text(json.dumps(spec))
    steps = [{"kind": "step", "epoch": 1, "step": 1 + 20 * i, "nor_grad_share": s} for i, s in enumerate(shares)]
    epoch_lines = [{"kind": "epoch", "epoch": e, "step": steps_per_epoch * e} for e in range(1, epochs + 1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in steps + epoch_lines))
    return folder


def test_pull_figure_draws_each_settings_mean_over_seeds_against_progress(tmp_path):
    runs = [
        pull_run(tmp_path / "a0", 2.5e-3, 0, [1e-3, 1e-2, 1e-1]),
        pull_run(tmp_path / "a1", 2.5e-3, 1, [3e-3, 3e-2, 3e-1]),
        pull_run(tmp_path / "long", 2.5e-3, 0, [1e-3, 2e-3], epochs=5),
        pull_run(tmp_path / "big", 0.25, 0, [0.1, 1.0, 10.0]),
        pull_run(tmp_path / "random", 2.5e-3, 0, [1e-3, 1e-2, 1e-1], cnp="random"),
    ]
    mae = fake_run(tmp_path / "mae", pretrain_spec(method="mae", lam=0.0), losses([1.0], [0.0]))
    curves = pull_curves([*runs, mae])  # the MAE run has no pull: left out
    assert set(curves["run"]) == {"a0", "a1", "long", "big", "random"}
    # progress is the step over the whole schedule: 40 steps per epoch, 5 epochs for "long"
    assert curves[curves["run"] == "long"]["progress"].tolist() == [1 / 200, 21 / 200]
    assert curves[curves["run"] == "a0"]["progress"].tolist() == [1 / 40, 21 / 40, 41 / 40]

    fig = pull_axes(curves)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    mean = lines["lam 0.0025, CNP paper, 1 epoch(s), 2 seed(s)"]
    np.testing.assert_allclose(mean.get_ydata(), [2e-3, 2e-2, 2e-1])  # the mean over the two seeds
    long = lines["lam 0.0025, CNP paper, 5 epoch(s), 1 seed(s)"]
    assert (mean.get_marker(), long.get_marker()) == (".", "^")  # marker: the schedule's length
    assert mean.get_color() != lines["lam 0.25, CNP paper, 1 epoch(s), 1 seed(s)"].get_color()  # colour: lambda
    assert (mean.get_linestyle(), lines["lam 0.0025, CNP random, 1 epoch(s), 1 seed(s)"].get_linestyle()) == ("-", "--")

    # the reference pair: the CSV beside one pull figure feeds the right panel of another
    pair = [pull_run(tmp_path / "paper", 5e-5, 0, [1e-3, 4e-3]), pull_run(tmp_path / "stand", 2.5e-3, 0, [1e-3, 2e-2])]
    pair_csv = Path(f"{pull_figure(pair, tmp_path / 'pair.png')}.csv")
    reference = pd.read_csv(pair_csv)
    reference.loc[reference["run"] == "paper", ["geometry", "img_size"]] = ["vit_tiny 224 px / 16", 224]
    reference.to_csv(pair_csv, index=False)
    out = pull_figure(runs, tmp_path / "pull.png", reference=pair_csv)
    assert_png_drawn(out)
    plotted = pd.read_csv(f"{out}.csv")
    assert set(plotted["panel"]) == {"runs", "reference"}
    right = {line.get_label(): line.get_ydata().tolist() for line in pull_axes(curves, reference).axes[1].get_lines()}
    assert right == {"vit_tiny 224 px / 16, lam 5e-05": [1e-3, 4e-3], "vit_micro 28 px / 2, lam 0.0025": [1e-3, 2e-2]}
    np.testing.assert_allclose(share_ratio(reference)["ratio"], [1.0, 5.0])


def test_pull_figure_refuses_runs_with_no_pull(tmp_path):
    mae = fake_run(tmp_path / "mae", pretrain_spec(method="mae", lam=0.0), losses([1.0], [0.0]))
    with pytest.raises(ConfigError, match="no NoR-MAE run"):
        pull_curves([mae])
