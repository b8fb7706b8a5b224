"""The paper's figures from our analyses and runs: PNG files drawn with matplotlib (Agg backend).

- ``cnp_similarity_*``: Figure 3, histogram(s) of closest-neighbour cosine (``normae cnp-stats`` JSONs).
- ``pca_*``: Figures 7-8, visible (red) vs CNP (blue) features, a grid of one panel per ``normae pca`` output.
- ``variants_*``: Figure 6, pre-training loss and fine-tuning top-1 per relation-penalty variant.

The ``*_axes`` functions return the matplotlib Figure (tests read what is drawn back from it); the
``*_figure`` ones save it as PNG and return the path.

The plots of a table's CSV (a sweep, the evidence table) are in ``normae.report.sweep_figures``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from normae.errors import ConfigError
from normae.report.run_folder import read_metrics, read_spec, variant_label


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path) -> Path:
    """Write ``fig`` as PNG; a figure drawn without a layout engine is laid out tightly first. The box is cut
    to what is drawn, so a legend or table placed outside the axes is kept whole."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(out, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return out


def cnp_similarity_axes(stats_files: list[str | Path]):
    """Figure 3 as a matplotlib Figure: a histogram (share of patches per bin) per stats file, a dotted line at
    its mean, the paper's mean / min / max as dashed black lines named at the top. The legend sits under
    the axes, where it covers neither a histogram nor the paper's labels."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.6), layout="constrained")
    paper = {}
    stats_all = [json.loads(Path(path).read_text()) for path in stats_files]
    for stats in stats_all:
        m = stats["measured"]
        edges, counts = np.array(stats["histogram"]["edges"]), np.array(stats["histogram"]["counts"])
        label = (
            f"{m['source']}, {m['images']} images, {m['img_size']} px, patch {m['patch_size']}, {m['pixels']} pixels: "
            f"mean {stats['mean']:.3f}, min {stats['min']:.3f}, max {stats['max']:.3f}"
        )
        line = ax.stairs(counts / counts.sum(), edges, label=label, linewidth=1.5)
        ax.axvline(stats["mean"], color=line.get_edgecolor(), linewidth=1, linestyle=":")
        paper = stats["paper"]
    for name, value in paper.items():
        ax.axvline(value, color="black", linestyle="--", linewidth=1)
        ax.annotate(
            f"paper {name} {value:g}",
            (value, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
        )
    lowest = min(stats["min"] for stats in stats_all)
    ax.set_xlim(min(0.0, lowest) - 0.02, 1.02)
    ax.set_xlabel("cosine similarity of a patch with its closest neighbour patch (3x3 window)")
    ax.set_ylabel("share of patches")
    ax.set_title(
        "Figure 3: patch vs closest-neighbour cosine (paper: ImageNet-1K, 4096 images)\n"
        "dashed black: paper's mean / min / max; dotted: our means",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    return fig


def cnp_similarity_figure(stats_files: list[str | Path], out: str | Path) -> Path:
    """Draw ``cnp_similarity_axes(stats_files)`` to the PNG ``out`` and return its path."""
    return _save(cnp_similarity_axes(stats_files), out)


def pca_axes(npz_files: list[str | Path], labels: list[str] | None = None):
    """Figures 7-8 as a matplotlib Figure: a grid of scatter panels (at most three columns, so that each
    stays readable at report width), one per ``normae pca`` output (its JSON beside it), visible red, CNP
    blue, titled by ``labels`` (what the paper's row is and what ran) or the JSON's label."""
    if labels is not None and len(labels) != len(npz_files):
        raise ConfigError(f"{len(labels)} labels for {len(npz_files)} PCA files")
    plt = _pyplot()
    columns = len(npz_files) if len(npz_files) <= 2 else 2 if len(npz_files) == 4 else 3
    rows = math.ceil(len(npz_files) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.4 * columns, 4.4 * rows + 0.6), squeeze=False, layout="constrained"
    )
    for i, (path, ax) in enumerate(zip(npz_files, axes.flat)):
        data = np.load(path)
        info = json.loads(Path(path).with_suffix(".json").read_text())
        coords, kind = data["coords"], data["kind"]
        ax.scatter(*coords[kind == 0].T, s=4, c="red", alpha=0.5, label="visible patches", linewidths=0)
        ax.scatter(*coords[kind == 1].T, s=4, c="blue", alpha=0.5, label="closest neighbour patches", linewidths=0)
        label = labels[i] if labels else info["label"]
        ax.set_title(
            f"{label}\n{info['dataset']}, {info['images']} images x {info['visible_per_image']} visible\n"
            f"CNP pairwise cos {info['mean_pairwise_cosine_cnp']:.3f}, "
            f"silhouette {info['silhouette_visible_vs_cnp_2d']:.3f}",
            fontsize=9,
        )
        variance = info["explained_variance_ratio"]
        ax.set_xlabel(f"PC1 ({variance[0]:.0%})")
        ax.set_ylabel(f"PC2 ({variance[1]:.0%})")
    for ax in axes.flat[len(npz_files) :]:
        ax.remove()
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, markerscale=3)
    fig.suptitle("Figures 7-8: PCA of L2-normalised encoder features, visible (red) vs CNP (blue)", fontsize=11)
    return fig


def pca_titles(table, plan) -> dict[str, str]:
    """Per pre-training run of ``table``'s PCA rows, a panel title naming the paper's model(s) the run
    stands in for and what ran: ``vit_base (ran vit_mini), nor_mae lam 0.0022, seed 0`` (a scale may map
    two of the paper's models to one run, and two runs to one model name)."""
    models: dict[str, list[str]] = {}
    for row in table.rows:
        if row.status == "analysis":
            for run_id in row.pretrain_ids:
                models.setdefault(run_id, []).append(row.terms["model"])
    titles = {}
    for run_id, paper_models in models.items():
        spec = plan.spec(run_id)
        paper = ", ".join(dict.fromkeys(paper_models))
        ran = "" if paper == spec.model else f" (ran {spec.model})"
        lam = f" lam {spec.lam:g}" if spec.method != "mae" else ""
        titles[run_id] = f"{paper}{ran}, {spec.method}{lam}, seed {spec.seed}"
    return titles


def pca_figure(npz_files: list[str | Path], out: str | Path, labels: list[str] | None = None) -> Path:
    """Draw ``pca_axes(npz_files, labels)`` to the PNG ``out`` and return its path."""
    return _save(pca_axes(npz_files, labels), out)


def _curve(run, kind: str, column: str) -> pd.DataFrame | None:
    metrics = read_metrics(run, kind)
    if metrics.empty or column not in metrics:
        return None
    return metrics[["step" if kind == "step" else "epoch", column]].dropna()


def variants_axes(pretrain_runs: list[str | Path], finetune_runs: list[str | Path]):
    """Figure 6 as a matplotlib Figure: pre-training reconstruction loss and NoR term per step (per epoch
    where a run logged one step), fine-tuning top-1 per epoch, a line per run. A variant has one colour in
    every panel, so one legend under the panels names them all."""
    plt = _pyplot()
    panels = [("loss_rec", "pre-training reconstruction loss"), ("loss_nor", "pre-training NoR term (before lambda)")]
    count = len(panels) + bool(finetune_runs)
    fig, axes = plt.subplots(1, count, figsize=(5 * count, 4.6), squeeze=False, layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = list(dict.fromkeys(variant_label(run) for run in [*pretrain_runs, *finetune_runs]))
    colour = {name: colours[i % len(colours)] for i, name in enumerate(names)}
    for ax, (column, title) in zip(axes[0], panels):
        x_name = "step"
        for run in pretrain_runs:
            curve = _curve(run, "step", column)
            curve = curve if curve is not None and len(curve) > 1 else _curve(run, "epoch", column)
            if curve is not None:
                x_name = curve.columns[0]
                name = variant_label(run)
                ax.plot(curve.iloc[:, 0], curve[column], label=name, color=colour[name])
        ax.set_xlabel("optimiser step" if x_name == "step" else "epoch")
        ax.set_title(title, fontsize=10)
    if finetune_runs:
        ax = axes[0][-1]
        for run in finetune_runs:
            curve = _curve(run, "epoch", "top1")
            if curve is not None:
                name = variant_label(run)
                ax.plot(curve["epoch"], curve["top1"], marker="o", label=name, color=colour[name])
        ax.set_xlabel("fine-tuning epoch")
        ax.set_ylabel("top-1 %")
        ax.set_title("fine-tuning top-1 on the evaluation split", fontsize=10)
    legend = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=min(len(legend), 4), fontsize=8)
    fig.suptitle(
        "Figure 6: relation penalties of the NoR loss (offdiag / diag / token); our runs, "
        f"{describe_scale(pretrain_runs)}",
        fontsize=11,
    )
    return fig


def variants_figure(pretrain_runs: list[str | Path], finetune_runs: list[str | Path], out: str | Path) -> Path:
    """Draw ``variants_axes(pretrain_runs, finetune_runs)`` to the PNG ``out`` and return its path."""
    return _save(variants_axes(pretrain_runs, finetune_runs), out)


def describe_scale(runs) -> str:
    """A few words on the runs' scale for a title: model, patch, data set, images, epochs."""
    specs = [read_spec(run) for run in runs]
    described = {
        f"{s.get('model')} p{s.get('patch_size')} on {s.get('dataset')}"
        f"{'' if s.get('train_samples') is None else ' (' + str(s['train_samples']) + ' images)'}, "
        f"{s.get('epochs')} epochs"
        for s in specs
    }
    return "; ".join(sorted(described))
