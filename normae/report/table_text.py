"""The readable side of the tables: the .md/.tex columns (numbers with their intervals, what ran beside
what the paper names) and the one-line NoR-MAE minus MAE summary with its verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from normae.experiments.plan import REPORTED_KEYS
from normae.report.statistics import VERDICTS

# reported.csv's terms, with the two that only NoR-MAE rows have after the method.
TERM_COLUMNS = (*REPORTED_KEYS[:3], "cnp", "nor_variant", *REPORTED_KEYS[3:])
# Table terms whose run may differ from the paper's (the scale maps them): column -> the spec's field.
RAN_TERMS = {"model": "model", "patch_size": "patch_size"}
# Columns of the .csv that the readable .md/.tex fold into other columns or into the header.
HIDDEN_COLUMNS = (
    *("table", "row", "pretrain_ids", "eval_ids", "ours_std", "ours_low", "ours_high", "ours_se", "ours_values"),
    *("ours_seeds", "over_init_low", "over_init_high"),
    *("seeds", "scale", "eval_images", "gain_low", "gain_high", "gain_se", "pair"),
    *(f"{term}_ran" for term in RAN_TERMS),
)


def gain_summary(frame: pd.DataFrame) -> str:
    """One line on NoR-MAE minus MAE over the table's pairs; empty where the table has no NoR-MAE row."""
    if not (frame["method"] == "nor_mae").any():
        return ""
    rows = frame[frame["verdict"].notna()]
    if rows.empty:
        return "No NoR-MAE row here has an own MAE counterpart to compare with."
    pairs = rows.drop_duplicates("pair")
    counted = f" ({len(rows)} rows; rows that ran the same runs count once)" if len(rows) > len(pairs) else ""
    paper = rows[rows["gain_paper"].notna()]
    paper_text = (
        f"; paper {number_text(paper['gain_paper'].mean(), signed=True)} on average over its {len(paper)} rows"
        if len(paper)
        else ""
    )
    verdicts = pairs["verdict"].value_counts()
    signs = pairs["gain_sign"].value_counts()
    return (
        f"NoR-MAE minus MAE over {len(pairs)} distinct run pairs{counted}: "
        f"ours {number_text(pairs['gain_ours'].mean(), signed=True)} "
        f"on average{paper_text}. Verdicts: "
        + ", ".join(f"{verdicts[v]} {v}" for v in VERDICTS if v in verdicts)
        + "; our gain's sign against the paper's: "
        + ", ".join(f"{count} {sign}" for sign, count in signs.items())
        + "."
    )


def verdict_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many distinct run pairs of a table earned each verdict (for the report's first page)."""
    if "verdict" not in frame:
        return {}
    counts = frame[frame["verdict"].notna()].drop_duplicates("pair")["verdict"].value_counts()
    return {v: int(counts[v]) for v in VERDICTS if v in counts}


def display_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The columns a reader scans, numbers rounded, ours as mean ± spread; settings shared by every
    row are moved out of the table into one line."""
    shown = frame.drop(columns=[c for c in HIDDEN_COLUMNS if c in frame])
    for term in RAN_TERMS:
        if f"{term}_ran" in frame:
            shown[term] = [
                _ran_text(paper, ran) for paper, ran in zip(frame[term].astype(object), frame[f"{term}_ran"])
            ]
    rows = [row for _, row in frame.iterrows()]
    shown["ours"] = [row_number_text(row, "ours", "ours_low", "ours_high", "ours_se", False) for row in rows]
    shown["gain_ours"] = [row_number_text(row, "gain_ours", "gain_low", "gain_high", "gain_se", True) for row in rows]
    if "over_init" in frame:
        shown["over_init"] = [
            row_number_text(row, "over_init", "over_init_low", "over_init_high", "", True) for row in rows
        ]
    if "nor_grad_share" in frame:
        shown["nor_grad_share"] = [("" if blank(v) else f"{v:.2g}") for v in frame["nor_grad_share"]]
    for column, signed in (("paper", False), ("delta", True), ("gain_paper", True)):
        shown[column] = [row_number_text(row, column, "", "", "", signed) for row in rows]
    shown = shown.replace("", None).dropna(axis=1, how="all").astype(object).fillna("")
    shared = [c for c in TERM_COLUMNS + ("metric",) if c in shown and shown[c].nunique() == 1 and len(shown) > 1]
    common = "; ".join(f"{c} {shown[c].iloc[0]}" for c in shared if shown[c].iloc[0] != "")
    return shown.drop(columns=shared), (f"Every row: {common}." if common else "")


def blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _ran_text(paper: object, ran: object) -> object:
    """``vit_base (ran vit_mini)`` where the scale ran something else than the paper's term."""
    if blank(ran) or blank(paper) or _term_text(ran) == _term_text(paper):
        return paper
    return f"{_term_text(paper)} (ran {_term_text(ran)})"


def _term_text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def row_number_text(row: pd.Series, value: str, low: str, high: str, se: str, signed: bool) -> str:
    """``value`` as the reader sees it: ``m [low, high]`` over seeds, ``m ± se`` for one evaluation; every
    number of the row in its metric's format, a sign only on a difference (``signed``)."""
    if blank(row.get(value)):
        return ""
    digits = metric_digits(row.get("metric"))
    text = number_text(row[value], digits, signed)
    if not blank(row.get(low)) and not blank(row.get(high)):
        text += f" [{number_text(row[low], digits)}, {number_text(row[high], digits)}]"
    elif not blank(row.get(se)):
        text += f" ± {number_text(row[se], digits)}"
    return text


# Metrics in percent points (top-1, mIoU) print with 2 decimals; the others (cosines, overhead ratios) with 3.
PERCENT_METRICS = ("top1", "top5", "miou")


def metric_digits(metric: object) -> int:
    return 2 if metric in PERCENT_METRICS or blank(metric) else 3


def number_text(value: float, digits: int = 2, signed: bool = False) -> str:
    """``value`` with ``digits`` decimals, ``+`` before a positive difference (``signed``) and never a sign on
    zero: ``-0.004`` reads ``0.00``, not ``-0.00``."""
    text = f"{value:{'+' if signed else ''}.{digits}f}"
    return f"{0:.{digits}f}" if float(text) == 0 else text


READING = (
    "ours: over several seeds the mean and its 95 % Student-t interval [low, high]; from one evaluation "
    "the value ± its binomial standard error over the evaluation images. gain_ours: NoR-MAE minus its MAE "
    "row, paired over the same seeds, with its 95 % interval (one seed: ± the two evaluations' combined "
    "standard error). verdict: reproduced (interval above 0, as the paper's gain), within noise (interval "
    "spans 0), reversed (interval on the other side), one seed (no interval). over_init (where the table "
    "has a random_init row): a pre-trained row minus the randomly initialised encoder, paired over seeds. "
    "nor_grad_share: ||grad(lambda L_nor)|| / ||grad(L_rec)|| in the first epoch of the row's NoR-MAE runs."
)


def verdicts_markdown(table_csvs: list[str] | list[Path]) -> str:
    """The report's first-page summary: per table (its written .csv), how many distinct NoR-MAE vs MAE
    run pairs earned each verdict, and the mean paired gain beside the paper's."""
    lines = [
        "| table | run pairs | verdicts | ours (mean gain) | paper (mean gain) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for path in sorted(Path(p) for p in table_csvs):
        frame = pd.read_csv(path)
        if "verdict" not in frame or frame["verdict"].isna().all():
            continue
        pairs = frame[frame["verdict"].notna()].drop_duplicates("pair")
        counts = ", ".join(f"{n} {v}" for v, n in verdict_counts(frame).items())
        paper = frame.loc[frame["verdict"].notna(), "gain_paper"].dropna()
        paper_text = number_text(paper.mean(), signed=True) if len(paper) else ""
        ours = number_text(pairs["gain_ours"].mean(), signed=True)
        lines.append(f"| {path.stem} | {len(pairs)} | {counts} | {ours} | {paper_text} |")
    return "\n".join(lines) + "\n"
