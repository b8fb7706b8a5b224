"""Finished runs -> the paper's tables with our numbers beside the paper's, and one tidy all_runs.csv.

Every number in a table is read from a run folder's summary.json (or an analysis file) that the
plan names for that row; a row whose run is missing is an error, never a blank that looks measured.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pandas as pd

from normae.atomic import read_json
from normae.errors import MissingResultError
from normae.experiments.plan import REPORTED_KEYS, Plan, TablePlan
from normae.paths import ResultsLayout

# reported.csv's terms, with the two that only NoR-MAE rows have after the method.
TERM_COLUMNS = (*REPORTED_KEYS[:3], "cnp", "nor_variant", *REPORTED_KEYS[3:])
# Which field of a measurement file holds each metric reported.csv names.
MEASURED_FIELDS = {
    "mean_cosine": "mean",
    "min_cosine": "min",
    "max_cosine": "max",
    "memory_overhead_vs_mae": "nor_over_mae_memory",
    "time_overhead_vs_mae": "nor_over_mae_time",
}
# Terms that make a NoR-MAE row differ from the MAE row it is compared with.
NOR_ONLY_TERMS = ("method", "lam", "cnp", "nor_variant")


def read_result(path: Path) -> dict:
    """A table's input file; a missing one says which target makes it."""
    result = read_json(path, f"run `snakemake {path}` (or the table's target) first")
    if not isinstance(result, dict):
        raise MissingResultError(f"{path} holds no result (a JSON object): delete it and rerun what writes it")
    return result


def run_summary(layout: ResultsLayout, run_id: str) -> dict:
    """The run's summary.json, which must say it is this run's: its ``run_id`` and its ``spec``."""
    path = layout.run(run_id).summary_path
    summary = read_result(path)
    if summary.get("run_id") != run_id:
        raise MissingResultError(
            f"{path} is not the summary of run {run_id} (its run_id is {summary.get('run_id')!r}): "
            "delete it and rerun the run"
        )
    if not isinstance(summary.get("spec"), dict):
        raise MissingResultError(f"{path} holds no spec (a JSON object under 'spec'): delete it and rerun the run")
    return summary


def result_value(result: dict, key: str, path: Path) -> float:
    """``result[key]`` (or ``result["final"][key]``) as a number; missing, not a number or not finite (NaN,
    which would silently drop the row from the gains) names the file."""
    final = result.get("final")
    value = result.get(key, final.get(key) if isinstance(final, dict) else None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MissingResultError(f"{path} has no number {key!r} (found {value!r}): rerun what writes it")
    if not math.isfinite(value):
        raise MissingResultError(f"{path} has {key!r} = {value!r}, not a finite number: rerun what writes it")
    return float(value)


def run_metric(layout: ResultsLayout, run_id: str, metric: str) -> float:
    return result_value(run_summary(layout, run_id), metric, layout.run(run_id).summary_path)


def _mean_and_spread(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def row_records(table: TablePlan, plan: Plan, layout: ResultsLayout) -> list[dict]:
    """One record per table row (measurements: one per source measured), ours read from finished runs."""
    records = []
    for index, row in enumerate(table.rows):
        base = {
            "table": table.name,
            "row": index,
            "status": row.status,
            **{column: row.terms.get(column) for column in TERM_COLUMNS},
            "metric": row.metric or "top1",
            "paper": row.paper_value,
            "ours": None,
            "ours_std": None,
            "seeds": None,
            "source": None,
            "pretrain_ids": " ".join(row.pretrain_ids),
            "eval_ids": " ".join(row.eval_ids),
            "reason": row.reason,
        }
        if row.status == "run":
            values = [run_metric(layout, run_id, str(base["metric"])) for run_id in row.eval_ids]
            base["ours"], base["ours_std"] = _mean_and_spread(values)
            base["seeds"] = len(values)
        elif row.status == "analysis":
            values = [
                result_value(read_result(layout.pca(run_id)), "mean_pairwise_cosine_cnp", layout.pca(run_id))
                for run_id in row.pretrain_ids
            ]
            base["metric"] = "cnp_pairwise_cosine"
            base["ours"], base["ours_std"] = _mean_and_spread(values)
            base["seeds"] = len(values)
            base["reason"] = (
                f"mean cosine between the encoder features of different CNPs (lower: CNPs told apart); "
                f"scatter in figures/{table.file}_pca.png"
            )
        elif row.status == "measure":
            records += _measured_records(base, table, plan, layout)
            continue
        records.append(base)
    return records


def _measured_records(base: dict, table: TablePlan, plan: Plan, layout: ResultsLayout) -> list[dict]:
    field = MEASURED_FIELDS[base["metric"]]
    if table.measure == "cost":
        measured = read_result(layout.cost())
        setting = (
            f"normae bench {measured.get('model')} {measured.get('img_size')} px patch {measured.get('patch_size')}"
        )
        return [{**base, "ours": result_value(measured, field, layout.cost()), "source": setting}]
    records = []
    for source in plan.scale.analysis["cnp_similarity"]:
        path = layout.cnp_similarity(source)
        records.append({**base, "ours": result_value(read_result(path), field, path), "source": source})
    return records


def add_gains(frame: pd.DataFrame) -> pd.DataFrame:
    """NoR-MAE minus its MAE row (same terms otherwise), as the paper reports it and as we measured it."""
    frame = frame.copy()
    frame["delta"] = frame["ours"] - frame["paper"]
    frame["gain_paper"] = math.nan
    frame["gain_ours"] = math.nan
    keys = [c for c in TERM_COLUMNS if c not in NOR_ONLY_TERMS]
    mae = frame[frame["method"] == "mae"]
    for index, row in frame[frame["method"] == "nor_mae"].iterrows():
        match = mae[(mae[keys].fillna("") == pd.Series({k: row[k] for k in keys}).fillna("")).all(axis=1)]
        if len(match):
            frame.loc[index, "gain_paper"] = row["paper"] - match.iloc[0]["paper"]
            frame.loc[index, "gain_ours"] = row["ours"] - match.iloc[0]["ours"]
    both = frame["gain_paper"].notna() & frame["gain_ours"].notna()
    frame["sign_reproduced"] = None
    frame.loc[both, "sign_reproduced"] = (frame.loc[both, "gain_paper"] > 0) == (frame.loc[both, "gain_ours"] > 0)
    return frame


def table_frame(table: TablePlan, plan: Plan, root: str | Path = ".") -> pd.DataFrame:
    frame = pd.DataFrame.from_records(row_records(table, plan, ResultsLayout(Path(root))))
    for column in ("paper", "ours", "ours_std"):
        frame[column] = pd.to_numeric(frame[column])
    frame = add_gains(frame)
    frame.insert(list(frame.columns).index("ours") + 1, "scale", plan.scale.name)
    return frame


def gain_summary(frame: pd.DataFrame) -> str:
    """One line on NoR-MAE minus MAE over the table's pairs; empty where the table has no NoR-MAE row."""
    if not (frame["method"] == "nor_mae").any():
        return ""
    pairs = frame[frame["sign_reproduced"].notna()]
    if pairs.empty:
        return "No NoR-MAE row here has both a paper and an own MAE counterpart to compare gains."
    reproduced = int(pairs["sign_reproduced"].sum())
    return (
        f"NoR-MAE minus MAE: paper {pairs['gain_paper'].mean():+.2f} on average over {len(pairs)} pairs, "
        f"ours {pairs['gain_ours'].mean():+.2f}; the sign of the gain is reproduced in {reproduced} of {len(pairs)}."
    )


def header_lines(table: TablePlan, plan: Plan) -> list[str]:
    scale = plan.scale
    lines = [table.title, f"Scale: {scale.name} ({scale.description}); seeds {plan.seeds}."]
    lines.append("At this scale: " + ("; ".join(table.mapping) or "the paper's settings") + ".")
    if scale.name != "paper":
        lines.append(
            f"Our numbers were measured at the {scale.name} scale, not the paper's: they are not "
            "expected to match the paper's values; compare signs and orderings, not magnitudes."
        )
    return lines


def _display(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The columns a reader scans, numbers rounded, ours as mean ± spread; settings shared by every
    row are moved out of the table into one line."""
    shown = frame.drop(columns=["table", "row", "pretrain_ids", "eval_ids", "ours_std", "seeds", "scale"])
    shown["ours"] = [
        ("" if pd.isna(m) else f"{m:.4g}") + ("" if pd.isna(s) else f" ± {s:.2g}")
        for m, s in zip(frame["ours"], frame["ours_std"])
    ]
    for column in ("paper", "delta", "gain_paper", "gain_ours"):
        shown[column] = [("" if pd.isna(v) else f"{v:.4g}") for v in frame[column]]
    shown = shown.replace("", None).dropna(axis=1, how="all").astype(object).fillna("")
    shared = [c for c in TERM_COLUMNS + ("metric",) if c in shown and shown[c].nunique() == 1 and len(shown) > 1]
    common = "; ".join(f"{c} {shown[c].iloc[0]}" for c in shared if shown[c].iloc[0] != "")
    return shown.drop(columns=shared), (f"Every row: {common}." if common else "")


def write_table(frame: pd.DataFrame, table: TablePlan, plan: Plan, out_dir: str | Path) -> list[Path]:
    """results/tables/<file>.csv (every column), .md and .tex (the readable columns, with the header)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / table.file
    header = header_lines(table, plan) + [line for line in [gain_summary(frame)] if line]
    frame.to_csv(f"{stem}.csv", index=False)
    shown, common = _display(frame)
    header += [common] if common else []
    markdown = "\n\n".join([f"## {header[0]}", *header[1:], shown.to_markdown(index=False)]) + "\n"
    Path(f"{stem}.md").write_text(markdown)
    caption = " ".join(header).replace("_", r"\_").replace("%", r"\%")
    Path(f"{stem}.tex").write_text(shown.to_latex(index=False, caption=caption, label=f"tab:{table.file}"))
    return [Path(f"{stem}.{suffix}") for suffix in ("csv", "md", "tex")]


def all_runs_frame(plan: Plan, root: str | Path = ".") -> pd.DataFrame:
    """A row per planned run: its id, stage, the tables that use it, its spec and its final metrics."""
    layout = ResultsLayout(Path(root))
    users: dict[str, list[str]] = {}
    for table in plan.tables.values():
        for run_id in sorted(table.pretrain_ids() | table.eval_ids()):
            users.setdefault(run_id, []).append(table.file)
    records = []
    for run_id, spec in [*plan.pretrain.items(), *plan.evaluations.items()]:
        summary = run_summary(layout, run_id)
        final = {f"final_{k}": v for k, v in summary.get("final", {}).items()}
        records.append(
            {
                "run_id": run_id,
                "stage": spec.stage,
                "scale": plan.scale.name,
                "tables": " ".join(users.get(run_id, [])),
                **spec.to_dict(),
                **final,
                "best_top1": summary.get("best_top1"),
                "epochs_run": summary.get("epochs"),
                "step_time_median_s": summary.get("step_time_median_s"),
                "wall_seconds": summary.get("wall_seconds_this_session"),
                "run_dir": str(layout.run(run_id).path),
            }
        )
    return pd.DataFrame.from_records(records)
