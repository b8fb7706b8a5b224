"""Plots of a table's CSV (``normae tables``): a sweep against its swept setting, and the evidence table.

- ``sweep_axes`` / ``sweep_figure``: two panels side by side, the paper's values (left) and ours with their
  95 % interval or ± binomial standard error (right), each on its own y axis, against the paper's setting;
  the ticks of ours say what ran at this scale (``200 (ran 1)``) where every series ran the same, else a
  table under the panels says what each series ran (Table 5 scales lambda per model).
- ``evidence_axes`` / ``evidence_figure``: the paired NoR-MAE minus MAE difference against lambda, one
  series per CNP mode, with the NoR term's share of the gradient on a second (log) axis where the CSV has it.

The ``*_axes`` functions return the matplotlib Figure (tests read its axes back); the ``*_figure`` ones save
it as PNG and return the path.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from normae.errors import ConfigError
from normae.experiments.config import SWEEP_TERMS as SWEEP_AXES
from normae.report.figures import _pyplot, _save

# Columns that can tell two lines of a sweep table apart.
LINE_COLUMNS = (
    "model",
    "method",
    "cnp",
    "nor_variant",
    "pretrain_dataset",
    "eval_dataset",
    "eval",
    "metric",
    *SWEEP_AXES,
)
# What a pre-training run id (normae.spec) says about each swept setting: ``-p4-``, ``-lam1e-05-``, ``-ep1-``.
RAN_PATTERNS = {
    "pretrain_epochs": r"-ep(\d+)-",
    "patch_size": r"-p(\d+)-",
    "mask_ratio": r"-mr([0-9.]+)-",
    "lam": r"-lam([0-9.]+(?:e[-+]?[0-9]+)?)-",
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")


def _text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _numbers(rows: pd.DataFrame, column: str) -> np.ndarray:
    if column not in rows:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)


def ran_values(table: pd.DataFrame, x: str) -> pd.Series:
    """Per row, the value of ``x`` that its runs ran: the ``<x>_ran`` column, else what the run ids in
    ``pretrain_ids`` say (``-ep1-``); NaN where neither tells or the row's runs disagree."""
    if f"{x}_ran" in table:
        return pd.Series(_numbers(table, f"{x}_ran"), index=table.index)

    def parse(ids: object) -> float:
        found = {float(v) for v in re.findall(RAN_PATTERNS[x], ids)} if isinstance(ids, str) else set()
        return found.pop() if len(found) == 1 else math.nan

    ids = table["pretrain_ids"] if "pretrain_ids" in table else pd.Series(None, index=table.index, dtype=object)
    return ids.map(parse).astype(float)


def error_bars(rows: pd.DataFrame, value: str, low: str, high: str, se: str) -> np.ndarray:
    """(below, above) per row: the distance to its 95 % interval's ends where both are set, else its
    ± standard error, else 0."""
    y, lo, hi, err = (_numbers(rows, c) for c in (value, low, high, se))
    interval = np.isfinite(lo) & np.isfinite(hi)
    below = np.where(interval, y - lo, np.where(np.isfinite(err), err, 0.0))
    above = np.where(interval, hi - y, np.where(np.isfinite(err), err, 0.0))
    return np.vstack([below, above])


def x_positions(values: np.ndarray, x: str) -> dict[float, float]:
    """Where each value of ``x`` sits: itself on lambda's log axis (0 has no place there) or when evenly
    spaced; else its rank, for categorical ticks (epochs 200, 1000, 1600)."""
    distinct = sorted({float(v) for v in values if math.isfinite(v)})
    if x == "lam":
        return {v: v for v in distinct if v > 0}
    steps = np.diff(distinct)
    if len(distinct) < 3 or np.allclose(steps, steps[0]):
        return {v: v for v in distinct}
    return {v: float(i) for i, v in enumerate(distinct)}


def _shifted(positions: np.ndarray, index: int, count: int, log: bool, spacing: float) -> np.ndarray:
    """Positions moved slightly per series so that no marker or error bar hides another."""
    shift = index - (count - 1) / 2
    return positions * 10 ** (0.03 * shift) if log else positions + 0.04 * spacing * shift


def _line_name(row: pd.Series, columns: list[str]) -> str:
    """The values that tell this line apart (settings that do not apply, e.g. an MAE row's CNP mode, left out)."""
    shown = [c for c in columns if pd.notna(row[c])]
    return ", ".join(
        _text(row[c]) if c in ("model", "method", "eval_dataset", "metric") else f"{c} {_text(row[c])}" for c in shown
    )


def _style(plt, index: int) -> dict:
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {
        "color": colours[index % len(colours)],
        "marker": MARKERS[index % len(MARKERS)],
        "linestyle": LINESTYLES[index % len(LINESTYLES)],
    }


def _set_ticks(ax, positions: dict[float, float], labels: dict[float, str], log: bool, x: str) -> None:
    if log:
        ax.set_xscale("log")
        ax.minorticks_off()
    if positions:
        ax.set_xticks(list(positions.values()), [labels.get(v, _text(v)) for v in positions], fontsize=8)
        spacing = np.diff(sorted(positions.values())).min() if len(positions) > 1 else 1.0
        ends = sorted(positions.values())
        if log:
            ax.set_xlim(ends[0] / 10**0.2, ends[-1] * 10**0.2)
        else:
            ax.set_xlim(ends[0] - 0.4 * spacing, ends[-1] + 0.4 * spacing)
    ax.set_xlabel(x)


def _draw_series(ax, plt, groups, x: str, column: str, positions: dict[float, float], log: bool) -> list:
    """One series per group: points at their position of ``x`` (with error bars for ours), and a flat
    line (ours: with its error band) for a value that has no place on the axis (MAE at no lambda).
    Rows without the value (not run, or no paper number) are left out. Returns the y extents drawn."""
    ours = column == "ours"
    spacing = float(np.diff(sorted(positions.values())).min()) if len(positions) > 1 else 1.0
    extents = []
    for i, (name, rows) in enumerate(groups):
        if ours and "status" in rows:
            rows = rows[rows["status"] == "run"]
        rows = rows[np.isfinite(_numbers(rows, column))]
        if rows.empty:
            continue
        style = _style(plt, i)
        errors = error_bars(rows, "ours", "ours_low", "ours_high", "ours_se") if ours else np.zeros((2, len(rows)))
        y = _numbers(rows, column)
        extents += [(y - errors[0]).min(), (y + errors[1]).max()]
        placed = np.array([positions.get(float(v), np.nan) for v in _numbers(rows, x)])
        on_axis = np.isfinite(placed)
        for value, below, above, at in zip(y[~on_axis], *errors[:, ~on_axis], _numbers(rows, x)[~on_axis]):
            where = f"no {x}" if math.isnan(at) else f"{x} {at:g}"
            ax.axhline(
                value, color=style["color"], linestyle=style["linestyle"], linewidth=1, label=f"{name} ({where})"
            )
            if below or above:
                ax.axhspan(value - below, value + above, color=style["color"], alpha=0.12, linewidth=0)
        if on_axis.any():
            order = np.argsort(placed[on_axis])
            ax.errorbar(
                _shifted(placed[on_axis][order], i, len(groups), log, spacing),
                y[on_axis][order],
                yerr=errors[:, on_axis][:, order] if ours else None,
                markersize=5,
                capsize=3,
                label=name,
                **style,
            )
    return extents


def ran_by_series(groups: list[tuple[str, pd.DataFrame]], x: str) -> dict[str, dict[float, float]]:
    """Per series, the value of ``x`` its runs ran at this scale, keyed by the paper's value, for the rows
    that ran (a scale may scale a setting per model: Table 5's ViT-Tiny and ViT-Small run other lambdas)."""
    ran: dict[str, dict[float, float]] = {}
    for name, rows in groups:
        if "status" in rows:
            rows = rows[rows["status"] == "run"]
        pairs = zip(_numbers(rows, x), ran_values(rows, x))
        ran[name] = {float(p): float(r) for p, r in pairs if math.isfinite(p) and math.isfinite(r)}
    return ran


def ran_tick_labels(ran: dict[str, dict[float, float]]) -> dict[float, str] | None:
    """Tick labels ``200\\n(ran 1)`` for the values that ran as something else, where every series ran the
    same there; None where two series ran one of the paper's values differently (the ticks cannot say
    both: the figure draws a table of what each series ran instead)."""
    per_value: dict[float, set[float]] = {}
    for values in ran.values():
        for paper, value in values.items():
            per_value.setdefault(paper, set()).add(value)
    if any(len(values) > 1 for values in per_value.values()):
        return None
    return {paper: f"{paper:g}\n(ran {value:g})" for paper, (value,) in per_value.items() if value != paper}


def _ran_note(ran_labels: dict[float, str] | None) -> str:
    """The x label's note on where the figure says what ran (nothing where everything ran as the paper)."""
    return " (what ran: the table below)" if ran_labels is None else " (what ran here)" if ran_labels else ""


def _panels(plt, count: int, size: tuple[float, float], table_rows: int):
    """A figure of ``count`` panels side by side and, where ``table_rows`` is set, an empty axes under them
    for the table of what ran; (figure, panels, table axes or None)."""
    width, height = size
    extra = 0.5 + 0.25 * table_rows if table_rows else 0.0
    fig = plt.figure(figsize=(width, height + extra), layout="constrained")
    if not table_rows:
        return fig, fig.subplots(1, count, squeeze=False)[0], None
    top, bottom = fig.subfigures(2, 1, height_ratios=[height, extra])
    panels = top.subplots(1, count, squeeze=False)[0]
    table_ax = bottom.subplots()
    table_ax.axis("off")
    return fig, panels, table_ax


def _ran_table(ax, ran: dict[str, dict[float, float]], x: str) -> None:
    """What each series ran of ``x`` (a row per series, a column per value of the paper's), on ``ax``."""
    series = {name: values for name, values in ran.items() if values}
    columns = sorted({paper for values in series.values() for paper in values})
    cells = [[f"{values[p]:g}" if p in values else "-" for p in columns] for values in series.values()]
    table = ax.table(
        cellText=cells,
        rowLabels=list(series),
        colLabels=[f"paper {p:g}" for p in columns],
        loc="upper center",
        cellLoc="center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(-1, len(columns))))
    ax.set_title(f"what ran at this scale: {x} per series, under the paper's {x} (- : not run)", fontsize=9)


def _sweep_table(table_csv: str | Path, x: str) -> pd.DataFrame:
    if x not in SWEEP_AXES:
        raise ConfigError(f"x must be one of {SWEEP_AXES}, got {x!r}")
    table = pd.read_csv(table_csv)
    missing = [c for c in ("table", "paper", "ours", x) if c not in table]
    if missing:
        raise ConfigError(f"{table_csv} lacks the columns {missing}")
    table = table[table["paper"].notna() | table["ours"].notna()]
    if table.empty or not table[x].notna().any():
        raise ConfigError(f"{table_csv} has no rows with a value of {x} and a number")
    return table


def sweep_axes(table_csv: str | Path, x: str):
    """The sweep figure of ``table_csv`` against ``x`` as a matplotlib Figure: the paper's values (left
    panel) and ours with their error bars (right panel), each series its own colour, marker and line style.

    The y limits of ours include every error bar: one seed's ± binomial standard error shows how far one
    evaluation image moves the value, rather than zooming into the spread of the means."""
    table = _sweep_table(table_csv, x)
    splits = [c for c in LINE_COLUMNS if c != x and c in table and table[c].nunique(dropna=False) > 1]
    groups = [
        (_line_name(rows.iloc[0], splits) if splits else "all rows", rows)
        for _, rows in (table.groupby(splits, dropna=False, sort=True) if splits else [((), table)])
    ]
    positions = x_positions(_numbers(table, x), x)
    log = x == "lam"
    ran = ran_by_series(groups, x)
    ran_labels = ran_tick_labels(ran)
    plt = _pyplot()
    fig, (paper_ax, ours_ax), table_ax = _panels(plt, 2, (12, 6.5), 0 if ran_labels is not None else len(ran))
    metric = table["metric"].dropna().iloc[0] if "metric" in table and table["metric"].notna().any() else "value"
    _draw_series(paper_ax, plt, groups, x, "paper", positions, log)
    extents = _draw_series(ours_ax, plt, groups, x, "ours", positions, log)
    _set_ticks(paper_ax, positions, {}, log, f"{x} (the paper's)")
    if ran_labels is None:
        _ran_table(table_ax, ran, x)
    _set_ticks(ours_ax, positions, ran_labels or {}, log, f"{x}: the paper's{_ran_note(ran_labels)}")
    if extents:
        low, high = min(extents), max(extents)
        pad = 0.08 * (high - low) if high > low else max(abs(high) * 0.05, 1.0)
        ours_ax.set_ylim(low - pad, high + pad)
    seeds = _numbers(table[table["ours"].notna()], "seeds")
    one_seed = bool(len(seeds)) and np.nanmax(seeds, initial=1.0) <= 1
    bars = (
        "one seed: bars ± binomial standard error over the evaluation images"
        if one_seed
        else "bars: 95 % interval over seeds (one seed: ± standard error)"
    )
    paper_ax.set_ylabel(f"paper {metric}")
    paper_ax.set_title("the paper's values", fontsize=10)
    ours_ax.set_ylabel(f"ours {metric}")
    ours_ax.set_title(f"ours; {bars}", fontsize=9)
    for ax in (paper_ax, ours_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    scale = ", ".join(sorted(str(s) for s in table["scale"].dropna().unique())) if "scale" in table else ""
    fig.suptitle(
        f"{table['table'].iloc[0]}: {metric} against {x}, the paper's (left) and ours (right), each on its own y axis"
        + (f"\nours at scale: {scale}" if scale else ""),
        fontsize=10,
    )
    return fig


def sweep_figure(table_csv: str | Path, x: str, out: str | Path) -> Path:
    """Draw ``sweep_axes(table_csv, x)`` to the PNG ``out`` and return its path."""
    return _save(sweep_axes(table_csv, x), out)


def _seeds_text(table: pd.DataFrame) -> str:
    """``seeds per row: mae 3, nor_mae paper lam 5e-05 3, ...`` (empty without a ``seeds`` column)."""
    if "seeds" not in table:
        return ""
    parts = []
    for _, row in table.iterrows():
        if pd.isna(row["seeds"]):
            continue
        name = " ".join(_text(row[c]) for c in ("method", "cnp") if c in row and pd.notna(row[c]))
        lam = f" lam {row['lam']:g}" if pd.notna(row.get("lam")) else ""
        parts.append(f"{name}{lam} {int(row['seeds'])}")
    if len({p.rsplit(" ", 1)[1] for p in parts}) == 1:
        return f"seeds: {parts[0].rsplit(' ', 1)[1]} per row"
    return "seeds per row: " + ", ".join(parts) if parts else ""


def evidence_axes(table_csv: str | Path):
    """The evidence table's figure as a matplotlib Figure: NoR-MAE minus its MAE (``gain_ours``, paired
    over seeds, with its 95 % interval or ± standard error) against the paper's lambda, one series per CNP
    mode (the paper's CNP connected across lambdas, the others single markers moved slightly aside), the
    paper's gain as black crosses, a line at 0 and, on a log right axis, ``nor_grad_share`` where set; a
    panel per protocol where the table scores its runs several ways (the paper scale's decisive experiment)."""
    table = pd.read_csv(table_csv)
    missing = [c for c in ("table", "method", "cnp", "lam", "gain_ours") if c not in table]
    if missing:
        raise ConfigError(f"{table_csv} lacks the columns {missing}")
    nor = table[(table["method"] == "nor_mae") & (_numbers(table, "lam") > 0)]
    protocols = list(nor["eval"].dropna().unique()) if "eval" in nor and nor["eval"].notna().any() else [None]
    ran = ran_by_series([(f"ours, CNP {cnp}", rows) for cnp, rows in nor.groupby("cnp", sort=True)], "lam")
    ran_labels = ran_tick_labels(ran)
    plt = _pyplot()
    width = 11 if len(protocols) == 1 else 6 * len(protocols) + 4  # room for the legend, right of the last panel
    fig, axes, table_ax = _panels(plt, len(protocols), (width, 5.2), 0 if ran_labels is not None else len(ran))
    if table_ax is not None:
        _ran_table(table_ax, ran, "lam")
    metric = table["metric"].dropna().iloc[0] if "metric" in table and table["metric"].notna().any() else "value"
    legend: dict = {}  # label -> handle, over every panel (the sweep's series may be in one panel only)
    for ax, protocol in zip(axes, protocols):
        rows = nor if protocol is None else nor[nor["eval"] == protocol]
        handles, labels = _evidence_panel(ax, plt, rows, ran_labels)
        legend.update(zip(labels, handles))
        ax.set_ylabel(f"NoR-MAE minus MAE, {metric}")
        if protocol is not None and len(protocols) > 1:
            ax.set_title(f"scored by {protocol}", fontsize=10)
    if legend:
        axes[-1].legend(legend.values(), legend.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.1, 1.0))
    seeds = _seeds_text(table)
    fig.suptitle(
        f"{table['table'].iloc[0]}: NoR-MAE minus MAE, paired over seeds (bars: 95 % interval; one seed: ± SE)"
        + (f"\n{textwrap.fill(seeds, 120)}" if seeds else ""),
        fontsize=9,
    )
    return fig


def _evidence_panel(ax, plt, nor: pd.DataFrame, ran_labels: dict[float, str] | None) -> tuple[list, list]:
    """One protocol's NoR-MAE rows drawn on ``ax`` (see ``evidence_axes``), its ticks saying what ran where
    ``ran_labels`` can (None: a table under the figure says it); the legend's handles and labels."""
    cnps = sorted(nor["cnp"].dropna().unique(), key=lambda c: (c != "paper", str(c)))
    # the paper's CNP in place, the others alternately left and right of it
    shifts = {cnp: (j + 1) // 2 * (1 if j % 2 else -1) if cnps[0] == "paper" else j + 1 for j, cnp in enumerate(cnps)}
    lams = x_positions(_numbers(nor, "lam"), "lam")
    ax.axhline(0, color="black", linewidth=1)
    for i, cnp in enumerate(cnps):
        rows = nor[(nor["cnp"] == cnp) & np.isfinite(_numbers(nor, "gain_ours"))].sort_values("lam")
        if rows.empty:
            continue
        style = {**_style(plt, i), "linestyle": "-" if cnp == "paper" else "none"}
        ax.errorbar(
            _shifted(_numbers(rows, "lam"), shifts[cnp], 1, True, 1.0),
            _numbers(rows, "gain_ours"),
            yerr=error_bars(rows, "gain_ours", "gain_low", "gain_high", "gain_se"),
            markersize=6,
            capsize=3,
            label=f"ours, CNP {cnp}",
            **style,
        )
    paper = nor[np.isfinite(_numbers(nor, "gain_paper"))].drop_duplicates("lam")
    if not paper.empty:
        ax.scatter(
            _numbers(paper, "lam"), _numbers(paper, "gain_paper"), marker="x", color="black", label="the paper's gain"
        )
    _set_ticks(ax, lams, ran_labels or {}, True, f"lambda: the paper's{_ran_note(ran_labels)}")
    handles, labels = ax.get_legend_handles_labels()
    share = nor[_numbers(nor, "nor_grad_share") > 0]
    if not share.empty:
        share_ax = ax.twinx()
        share_ax.set_yscale("log")
        for i, cnp in enumerate(cnps):
            rows = share[share["cnp"] == cnp].sort_values("lam")
            if not rows.empty:
                share_ax.plot(
                    _shifted(_numbers(rows, "lam"), shifts[cnp], 1, True, 1.0),
                    _numbers(rows, "nor_grad_share"),
                    color="grey",
                    marker=MARKERS[i % len(MARKERS)],
                    markerfacecolor="none",
                    linestyle=":" if cnp == "paper" else "none",
                    label=f"nor_grad_share, CNP {cnp} (right axis)",
                )
        share_ax.set_ylabel("first-epoch nor_grad_share (log)")
        more = share_ax.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    return handles, labels


def evidence_figure(table_csv: str | Path, out: str | Path) -> Path:
    """Draw ``evidence_axes(table_csv)`` to the PNG ``out`` and return its path."""
    return _save(evidence_axes(table_csv), out)
