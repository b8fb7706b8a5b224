"""``normae compare``: two run folders side by side -- the spec fields that differ, final metrics, curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from normae.errors import ConfigError
from normae.experiments.config import NOR_LOSS_TERMS
from normae.report.run_folder import read_metrics, read_spec, read_summary
from normae.report.statistics import binomial_se
from normae.spec import NOR_METHODS, SpecBase

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
# Fields of a pre-training spec that only a NoR method reads: another method records them unused.
NOR_ONLY_FIELDS = frozenset({*NOR_LOSS_TERMS, "cnp_wrap"})
# Final metrics that are a top-1 in percent over the evaluation images: each gets its binomial noise band.
TOP1_METRICS = ("top1", "best_top1", "top1_cls", "top1_mean")
KNN_POOLINGS_TEXT = (
    "k-NN top-1 by pooling: top1_cls votes with the cls token's feature, top1_mean with the mean of the patch "
    "tokens; top1 is the {pooling} pooling (the summary's headline_pooling), where MAE's objective and the NoR "
    "term act."
)


def unused_fields(spec: dict) -> set[str]:
    """The fields of ``spec`` that cannot change its result: for a method without the NoR term, the NoR term's
    settings (kept in its digest, so run ids stay as they are, but unread), and the spec's ``inert_fields()``
    (another method's options) where it parses (a spec of an older version may not)."""
    method = spec.get("method")
    unused = set(NOR_ONLY_FIELDS & set(spec)) if method is not None and method not in NOR_METHODS else set()
    try:
        return unused | SpecBase.parse(spec).inert_fields()
    except (ConfigError, TypeError, ValueError):
        return unused


def spec_diff(a: dict, b: dict) -> dict[str, tuple]:
    """{field: (value in a, value in b)} for the fields whose values differ and that both runs use (a field one
    run does not use is no difference: an MAE spec records an unread lambda); a field one spec lacks shows as
    MISSING."""
    unused = unused_fields(a) | unused_fields(b)
    return {
        key: (a.get(key, MISSING), b.get(key, MISSING))
        for key in sorted(set(a) | set(b))
        if a.get(key, MISSING) != b.get(key, MISSING) and key not in unused
    }


def used_by_one(a: dict, b: dict) -> dict[str, tuple]:
    """{field: (value in a or MISSING, value in b or MISSING)} for the differing fields only one run uses (a
    NoR-MAE run's lambda beside an MAE run): shown apart from the differences."""
    unused_a, unused_b = unused_fields(a), unused_fields(b)
    return {
        key: (MISSING if key in unused_a else a.get(key, MISSING), MISSING if key in unused_b else b.get(key, MISSING))
        for key in sorted((unused_a ^ unused_b) & (set(a) | set(b)))
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


def eval_images(run: str | Path) -> int | None:
    """How many images the run's top-1 was measured on (the summary's ``eval_images``); None if not recorded."""
    summary = read_summary(run) or {}
    images = summary.get("eval_images", (summary.get("final") or {}).get("eval_images"))
    return images if isinstance(images, int) and not isinstance(images, bool) and images > 0 else None


def _metric_rows(finals: list[dict], images: list[int | None]) -> list[list[str]]:
    """The final metrics as rows: key, A, B, B - A; a top-1 in percent carries ± its binomial standard error
    over the run's evaluation images, and B - A ± the two errors combined."""
    rows = [["final", "A", "B", "B - A"]]
    for key in dict.fromkeys([*finals[0], *finals[1]]):
        values = [final.get(key, MISSING) for final in finals]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        cells = [_format(v) for v in values] + [_format(values[1] - values[0]) if numbers else MISSING]
        if key in TOP1_METRICS:
            errors = [binomial_se(v, n) if isinstance(v, (int, float)) and n else None for v, n in zip(values, images)]
            for i, error in enumerate(errors):
                cells[i] += "" if error is None else f" ± {error:.2g}"
            if numbers and None not in errors:
                cells[2] += f" ± {(errors[0] ** 2 + errors[1] ** 2) ** 0.5:.2g}"  # type: ignore[operator]
        rows.append([key, *cells])
    return rows


def _reading_notes(finals: list[dict], images: list[int | None], runs: list[str | Path]) -> list[str]:
    """What the final metrics' names and bands mean, where they appear."""
    notes = []
    if any(key in final for final in finals for key in TOP1_METRICS):
        counts = ", ".join(f"{name} {n if n else 'not recorded'}" for name, n in zip("AB", images))
        notes.append(
            "± after a top-1: its binomial standard error sqrt(p(1-p)/n) in points, n = the evaluation images "
            f"({counts}); B - A: the two combined. A difference within about twice it is noise."
        )
    if any(key in final for final in finals for key in ("top1_cls", "top1_mean")):
        poolings = {(read_summary(run) or {}).get("headline_pooling") for run in runs} - {None}
        notes.append(KNN_POOLINGS_TEXT.format(pooling=" / ".join(sorted(poolings)) or "mean"))
    return notes


def compare_text(run_a: str | Path, run_b: str | Path) -> str:
    """The comparison as text: A and B, the differing spec fields (fields one run does not use apart), final
    metrics (with B - A and each top-1's noise band), per-epoch curves."""
    names = ["A", "B"]
    lines = [f"A: {run_a}", f"B: {run_b}"]
    specs = read_spec(run_a), read_spec(run_b)
    diff = spec_diff(*specs)
    lines.append(f"\nspec fields that differ ({len(diff)}):" if diff else "\nspecs are identical")
    if diff:
        lines.append(_aligned([["field", "A", "B"]] + [[key, _format(a), _format(b)] for key, (a, b) in diff.items()]))
    apart = used_by_one(*specs)
    if apart:
        lines.append(f"\nfields only one run uses (the other's method does not read them; {MISSING}: unused):")
        lines.append(_aligned([["field", "A", "B"]] + [[key, _format(a), _format(b)] for key, (a, b) in apart.items()]))
    finals = [final_metrics(run_a), final_metrics(run_b)]
    if any(finals):
        images = [eval_images(run_a), eval_images(run_b)]
        finished = all(read_summary(run) is not None for run in (run_a, run_b))
        lines += [
            f"\nfinal metrics{'' if finished else ' (an unfinished run shows its last epoch)'}:",
            _aligned(_metric_rows(finals, images)),
            *_reading_notes(finals, images, [run_a, run_b]),
        ]
    curves = epoch_curves([run_a, run_b], names)
    if not curves.empty:
        lines += ["\nper epoch:", curves.to_string(float_format=lambda v: f"{v:.5g}", na_rep=MISSING)]
    return "\n".join(lines) + "\n"


def compare_figure(run_a: str | Path, run_b: str | Path):
    """One panel per logged quantity against the optimiser step: the step lines of metrics.jsonl where a
    quantity has more than one (losses, diagnostics), the epoch lines as markers at their step (top-1, and every
    quantity of a run that logged no steps). A matplotlib Figure."""
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
        for colour, (name, run) in zip(("C0", "C1"), runs.items()):
            _draw_run(ax, step_lines[name], epoch_lines[name], column, colour, f"{name}: {Path(run).name}")
        ax.set_xlabel("optimiser step")
        ax.set_title(column, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(f"A: {Path(run_a).name}  vs  B: {Path(run_b).name}", fontsize=10)
    fig.tight_layout()
    return fig


def compare_plot(run_a: str | Path, run_b: str | Path, out: str | Path) -> Path:
    """Draw ``compare_figure(run_a, run_b)`` to the PNG ``out`` and return its path."""
    import matplotlib.pyplot as plt

    fig = compare_figure(run_a, run_b)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _draw_run(ax, steps: pd.DataFrame, epochs: pd.DataFrame, column: str, colour: str, label: str) -> None:
    """One run's ``column``: a line through its step lines where it logged several, and its epoch means as
    markers at the epoch's last step (the only points where a quantity is logged per epoch)."""
    drawn = False
    if column in steps and steps[column].notna().sum() > 1:
        logged = steps[steps[column].notna()]
        ax.plot(logged["step"], logged[column], color=colour, linewidth=1, label=f"{label} (per step)")
        drawn = True
    if column in epochs and epochs[column].notna().any():
        logged = epochs[epochs[column].notna()]
        ax.plot(
            logged["step"],
            logged[column],
            color=colour,
            marker="o",
            linestyle="none" if drawn else "-",
            label=f"{label} (epoch {'mean' if drawn else 'value'})",
        )
