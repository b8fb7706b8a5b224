"""The NoR term's pull over training: ``nor_grad_share`` (||grad(lam L_nor)|| / ||grad(L_rec)||) at every
diagnosed step of NoR-MAE pre-training runs, against how far through its schedule each run was.

Why: a stand-in's lambda is rescaled so that the pull at initialisation is the paper geometry's
(docs/workflow.md, "Faithful miniatures"); whether the pull stays matched while the model trains is what
decides whether a stand-in's verdict speaks for the paper geometry. ``pull_curves`` reads the runs'
``metrics.jsonl`` (torch-free); ``pull_axes`` draws them (left: the runs, one line per setting, its mean
over seeds, the seeds' range shaded, colour by the lambda that ran; right: the reference pair, a paper-
geometry run and its stand-in on one shared schedule, from a CSV that ``pull_curves`` wrote).
``pull_figure`` saves the PNG and the plotted values as CSV beside it (``<png>.csv``), which tests read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from normae.errors import ConfigError
from normae.paths import RunFolder
from normae.report.figures import _pyplot, _save
from normae.spec import NOR_METHODS

SHARE = "nor_grad_share"
SPEC_COLUMNS = ("model", "img_size", "patch_size", "lam", "cnp", "epochs", "seed")
CURVE_COLUMNS = ("run", "geometry", *SPEC_COLUMNS, "step", "progress", SHARE)


def _geometry(spec: dict) -> str:
    size = spec.get("img_size") or "native"
    return f"{spec['model']} {size} px / {spec['patch_size']}"


def run_curve(run: RunFolder, spec: dict) -> pd.DataFrame:
    """One finished NoR-MAE run's diagnosed steps: step, progress (step / the schedule's steps), share."""
    epochs = run.read_metrics("epoch")
    steps = [line for line in run.read_metrics("step") if SHARE in line]
    if not epochs or not steps:
        raise ConfigError(f"{run.path}: no epoch line or no {SHARE} in {run.METRICS}; is it a finished NoR-MAE run?")
    per_epoch = epochs[0]["step"]
    total = per_epoch * spec["epochs"]
    frame = pd.DataFrame({"step": [line["step"] for line in steps], SHARE: [line[SHARE] for line in steps]})
    frame["progress"] = frame["step"] / total
    for key in SPEC_COLUMNS:
        frame[key] = spec.get(key)
    frame["run"], frame["geometry"] = run.name, _geometry(spec)
    return frame[list(CURVE_COLUMNS)]


def pull_curves(folders: list[str | Path]) -> pd.DataFrame:
    """``run_curve`` of each NoR run folder, stacked (folders of other methods are skipped)."""
    runs = [(run, run.read_spec()) for run in map(RunFolder, folders)]
    frames = [run_curve(run, spec) for run, spec in runs if spec.get("method") in NOR_METHODS]
    if not frames:
        raise ConfigError("no NoR-MAE run among the folders given: the pull is measured on NoR-MAE runs only")
    return pd.concat(frames, ignore_index=True)


def _settings(curves: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """One group per setting (lambda, CNP, epochs), its seeds together: the 1-epoch ones first, the paper's CNP
    first among them."""
    keys = ["lam", "cnp", "epochs"]
    return sorted(curves.groupby(keys, sort=False), key=lambda item: (item[0][2], item[0][1] != "paper", item[0][0]))


def _draw_settings(ax, plt, curves: pd.DataFrame, x: str) -> None:
    from matplotlib.colors import LogNorm

    lams = curves["lam"].astype(float)
    norm = LogNorm(vmin=lams.min(), vmax=max(lams.max(), lams.min() * 1.01))
    cmap = plt.get_cmap("viridis")
    cnps = sorted(curves["cnp"].unique(), key=lambda cnp: (cnp != "paper", cnp))  # line style: the CNP
    dashes = dict(zip(cnps, ("-", "--", ":", "-.")))
    markers = dict(zip(sorted(curves["epochs"].unique()), ".^sD"))  # marker: the schedule's length
    for (lam, cnp, epochs), rows in _settings(curves):
        by_step = rows.groupby(x)[SHARE]
        mean, low, high = by_step.mean(), by_step.min(), by_step.max()
        seeds = rows["seed"].nunique()
        colour = cmap(norm(float(lam)))
        label = f"lam {float(lam):.3g}, CNP {cnp}, {epochs:g} epoch(s), {seeds} seed(s)"
        style = {"color": colour, "linestyle": dashes[cnp], "marker": markers[epochs], "markersize": 4}
        ax.plot(mean.index, mean.to_numpy(), label=label, **style)
        if seeds > 1:
            ax.fill_between(mean.index, low.to_numpy(), high.to_numpy(), color=colour, alpha=0.15, linewidth=0)
    ax.set_yscale("log")
    ax.set_ylabel(f"{SHARE} (log)")
    if lams.nunique() > 1:  # one lambda: the legend names it
        bar = plt.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01)
        bar.set_label("lambda that ran")


def _draw_reference(ax, reference: pd.DataFrame) -> None:
    for i, (geometry, rows) in enumerate(reference.groupby("geometry", sort=False)):
        rows = rows.sort_values("step")
        lam = float(rows["lam"].iloc[0])
        ax.plot(
            rows["step"],
            rows[SHARE],
            color=("black", "tab:red")[i % 2],
            marker="os"[i % 2],
            label=f"{geometry}, lam {lam:.3g}",
        )
    ax.set_yscale("log")
    ax.set_xlabel(f"optimiser step (one schedule of {int(reference['step'].max())} steps for both)")
    ax.set_title("the paper geometry and its stand-in, same schedule", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")


def pull_axes(curves: pd.DataFrame, reference: pd.DataFrame | None = None):
    """The figure (see the module docstring) as a matplotlib Figure; ``reference`` adds the right panel."""
    plt = _pyplot()
    panels = 2 if reference is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels + 1, 5.2), squeeze=False)
    left = axes[0][0]
    _draw_settings(left, plt, curves, "progress")
    left.set_xlabel("training progress (step / the run's schedule)")
    left.set_title("this scale's NoR-MAE runs (mean over seeds, their range shaded)", fontsize=10)
    left.legend(fontsize=7, loc="lower right")
    if reference is not None:
        _draw_reference(axes[0][1], reference)
        axes[0][1].set_ylabel(f"{SHARE} (log)")
    fig.suptitle("The NoR term's pull over training: ||grad(lam L_nor)|| / ||grad(L_rec)||", fontsize=10)
    return fig


def pull_figure(folders: list[str | Path], out: str | Path, reference: str | Path | None = None) -> Path:
    """Draw ``pull_axes`` of ``folders`` (and the ``reference`` CSV) to the PNG ``out``; the plotted values
    go to ``<out>.csv`` (a ``panel`` column: runs or reference)."""
    curves = pull_curves(folders)
    ref = pd.read_csv(reference) if reference else None
    if ref is not None and not {"geometry", "step", "lam", SHARE} <= set(ref.columns):
        raise ConfigError(f"{reference}: not a pull curve CSV (the .csv `normae figure pull` writes beside its PNG)")
    out = _save(pull_axes(curves, ref), out)
    plotted = [curves.assign(panel="runs")] + ([ref.assign(panel="reference")] if ref is not None else [])
    pd.concat(plotted, ignore_index=True).to_csv(f"{out}.csv", index=False)
    return out


def share_ratio(reference: pd.DataFrame) -> pd.DataFrame:
    """Per step of the reference pair: each geometry's share and the stand-in / paper-geometry ratio (the paper
    geometry: the larger image)."""
    wide = reference.pivot_table(index="step", columns="geometry", values=SHARE)
    if wide.shape[1] != 2:
        raise ConfigError(f"the reference holds {wide.shape[1]} geometries; the ratio needs exactly two")
    paper = reference.groupby("geometry")["img_size"].max().idxmax()
    other = next(c for c in wide.columns if c != paper)
    wide["ratio"] = wide[other] / wide[paper]
    return wide.replace([np.inf, -np.inf], np.nan)
