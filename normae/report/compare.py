"""``normae compare``: two run folders side by side -- the spec fields that differ, final metrics, curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from normae.errors import ConfigError
from normae.report.run_folder import read_metrics, read_spec, read_summary

# Per-epoch quantities worth comparing, in this order, where a run logged them.
# The NoR-MAE diagnostics (normae.core.diagnostics.DIAGNOSTICS) are drawn as epoch means.
CURVE_COLUMNS = (
    "loss",
    "loss_rec",
    "loss_nor",
    "nor_grad_share",
    "branch_alignment",
    "cnp_true_neighbor",
    "top1",
    "top5",
)
SUMMARY_FIELDS = (
    "epochs",
    "optimizer_steps",
    "images_seen",
    "best_top1",
    "best_epoch",
    "step_time_median_s",
    "images_per_second",
)
MISSING = "-"


def spec_diff(a: dict, b: dict) -> dict[str, tuple]:
    """{field: (value in a, value in b)} for the fields whose values differ; a field one spec lacks shows as MISSING."""
    return {
        key: (a.get(key, MISSING), b.get(key, MISSING))
        for key in sorted(set(a) | set(b))
        if a.get(key, MISSING) != b.get(key, MISSING)
    }


def final_metrics(run: str | Path) -> dict:
    """The last epoch's means and the summary's totals; for an unfinished run, the last epoch line logged."""
    summary = read_summary(run)
    if summary is not None:
        return {**summary.get("final", {}), **{k: summary[k] for k in SUMMARY_FIELDS if summary.get(k) is not None}}
    epochs = read_metrics(run, "epoch")
    if epochs.empty:
        return {}
    last = epochs.iloc[-1]
    return {k: v for k, v in last.items() if k in CURVE_COLUMNS or k == "epoch"}


def epoch_curves(runs: list[str | Path], names: list[str]) -> pd.DataFrame:
    """Epoch-mean curves of both runs in one table, columns ``<quantity> <name>``, indexed by epoch (from 1)."""
    frames = []
    for run, name in zip(runs, names):
        epochs = read_metrics(run, "epoch")
        if epochs.empty:
            continue
        present = [c for c in CURVE_COLUMNS if c in epochs]
        frames.append(epochs.set_index(epochs["epoch"])[present].rename(columns={c: f"{c} {name}" for c in present}))
    table = pd.concat(frames, axis=1) if frames else pd.DataFrame()
    table.index.name = "epoch"
    return table.reindex(columns=sorted(table.columns, key=lambda c: (CURVE_COLUMNS.index(c.split()[0]), c)))


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _aligned(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def compare_text(run_a: str | Path, run_b: str | Path) -> str:
    """The comparison as text: A and B, the differing spec fields, final metrics (with B - A), per-epoch curves."""
    names = ["A", "B"]
    lines = [f"A: {run_a}", f"B: {run_b}"]
    diff = spec_diff(read_spec(run_a), read_spec(run_b))
    lines.append(f"\nspec fields that differ ({len(diff)}):" if diff else "\nspecs are identical")
    if diff:
        lines.append(_aligned([["field", "A", "B"]] + [[key, _format(a), _format(b)] for key, (a, b) in diff.items()]))
    finals = [final_metrics(run_a), final_metrics(run_b)]
    keys = list(dict.fromkeys([*finals[0], *finals[1]]))
    if keys:
        rows = [["final", "A", "B", "B - A"]]
        for key in keys:
            a, b = (final.get(key, MISSING) for final in finals)
            delta = _format(b - a) if all(isinstance(v, (int, float)) for v in (a, b)) else MISSING
            rows.append([key, _format(a), _format(b), delta])
        finished = all(read_summary(run) is not None for run in (run_a, run_b))
        lines += [f"\nfinal metrics{'' if finished else ' (an unfinished run shows its last epoch)'}:", _aligned(rows)]
    curves = epoch_curves([run_a, run_b], names)
    if not curves.empty:
        lines += ["\nper epoch:", curves.to_string(float_format=lambda v: f"{v:.5g}", na_rep=MISSING)]
    return "\n".join(lines) + "\n"


def compare_plot(run_a: str | Path, run_b: str | Path, out: str | Path) -> Path:
    """One panel per logged quantity: losses per optimiser step (epoch means where no steps were logged),
    top-1 per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {"A": run_a, "B": run_b}
    step_lines = {name: read_metrics(run, "step") for name, run in runs.items()}
    epoch_lines = {name: read_metrics(run, "epoch") for name, run in runs.items()}
    panels = [c for c in CURVE_COLUMNS if any(c in frame for frame in (*step_lines.values(), *epoch_lines.values()))]
    if not panels:
        raise ConfigError(f"neither {run_a} nor {run_b} logged any of {CURVE_COLUMNS}")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, column in zip(axes[0], panels):
        for name, run in runs.items():
            steps, epochs = step_lines[name], epoch_lines[name]
            if column.startswith("loss") and column in steps and len(steps) > 1:
                ax.plot(steps["step"], steps[column], label=f"{name}: {Path(run).name}")
                ax.set_xlabel("optimiser step")
            elif column in epochs:
                ax.plot(epochs["epoch"], epochs[column], marker="o", label=f"{name}: {Path(run).name}")
                ax.set_xlabel("epoch")
        ax.set_title(column, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(f"A: {Path(run_a).name}  vs  B: {Path(run_b).name}", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
