"""The paper's figures from our analyses and runs: PNG files drawn with matplotlib (Agg backend).

- ``cnp_similarity_figure``: Figure 3, histogram(s) of closest-neighbour cosine (``normae cnp-stats`` JSONs).
- ``pca_figure``: Figures 7-8, visible (red) vs CNP (blue) features, one panel per ``normae pca`` output.
- ``variants_figure``: Figure 6, pre-training loss and fine-tuning top-1 per relation-penalty variant.

The plots of a table's CSV (a sweep, the evidence table) are in ``normae.report.sweep_figures``.
"""

from __future__ import annotations

import json
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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    _pyplot().close(fig)
    return out


def cnp_similarity_figure(stats_files: list[str | Path], out: str | Path) -> Path:
    """Histograms (share of patches per bin) of each stats file, with our mean / min / max and the paper's
    0.83 / 0.07 / 0.999."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    paper = {}
    for path in stats_files:
        stats = json.loads(Path(path).read_text())
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
    lowest = min(json.loads(Path(p).read_text())["min"] for p in stats_files)
    ax.set_xlim(min(0.0, lowest) - 0.02, 1.02)
    ax.set_xlabel("cosine similarity of a patch with its closest neighbour patch (3x3 window)")
    ax.set_ylabel("share of patches")
    ax.set_title(
        "Figure 3: patch vs closest-neighbour cosine (paper: ImageNet-1K, 4096 images)\n"
        "dashed black: paper's mean / min / max; dotted: our means",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, out)


def pca_figure(npz_files: list[str | Path], out: str | Path, labels: list[str] | None = None) -> Path:
    """One scatter panel per ``normae pca`` output (its JSON beside it), visible red, CNP blue."""
    if labels is not None and len(labels) != len(npz_files):
        raise ConfigError(f"{len(labels)} labels for {len(npz_files)} PCA files")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(npz_files), figsize=(4.6 * len(npz_files), 4.6), squeeze=False)
    for i, (path, ax) in enumerate(zip(npz_files, axes[0])):
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
        ax.legend(fontsize=7, markerscale=3)
    fig.suptitle("Figures 7-8: PCA of L2-normalised encoder features, visible (red) vs CNP (blue)", fontsize=11)
    return _save(fig, out)


def _curve(run, kind: str, column: str) -> pd.DataFrame | None:
    metrics = read_metrics(run, kind)
    if metrics.empty or column not in metrics:
        return None
    return metrics[["step" if kind == "step" else "epoch", column]].dropna()


def variants_figure(pretrain_runs: list[str | Path], finetune_runs: list[str | Path], out: str | Path) -> Path:
    """Figure 6: pre-training reconstruction loss and NoR term per step, fine-tuning top-1 per epoch, a line per run."""
    plt = _pyplot()
    panels = [("loss_rec", "pre-training reconstruction loss"), ("loss_nor", "pre-training NoR term (before lambda)")]
    fig, axes = plt.subplots(
        1, len(panels) + bool(finetune_runs), figsize=(5 * (len(panels) + bool(finetune_runs)), 4.2)
    )
    for ax, (column, title) in zip(axes, panels):
        for run in pretrain_runs:
            curve = _curve(run, "step", column)
            curve = curve if curve is not None and len(curve) > 1 else _curve(run, "epoch", column)
            if curve is not None:
                ax.plot(curve.iloc[:, 0], curve[column], label=variant_label(run))
        ax.set_xlabel("optimiser step" if curve is None or curve.columns[0] == "step" else "epoch")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    if finetune_runs:
        ax = axes[-1]
        for run in finetune_runs:
            curve = _curve(run, "epoch", "top1")
            if curve is not None:
                ax.plot(curve["epoch"], curve["top1"], marker="o", label=variant_label(run))
        ax.set_xlabel("fine-tuning epoch")
        ax.set_ylabel("top-1 %")
        ax.set_title("fine-tuning top-1 on the evaluation split", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(
        "Figure 6: relation penalties of the NoR loss (offdiag / diag / token); our runs, "
        f"{describe_scale(pretrain_runs)}",
        fontsize=11,
    )
    return _save(fig, out)


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
