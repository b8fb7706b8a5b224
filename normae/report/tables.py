"""Finished runs -> the paper's tables with our numbers beside the paper's, and one tidy all_runs.csv.

Every number in a table is read from a run folder's summary.json (or an analysis file) that the
plan names for that row; a row whose run is missing is an error, never a blank that looks measured.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import pandas as pd

from normae.atomic import read_json
from normae.errors import MissingResultError
from normae.experiments.plan import Plan, Row, TablePlan
from normae.paths import ResultsLayout
from normae.report.latex import paper_table_tex
from normae.report.pairs import add_gains, add_pretraining_effect
from normae.report.run_folder import check_summary_spec
from normae.report.statistics import binomial_se, mean_interval
from normae.report.table_text import RAN_TERMS, READING, TERM_COLUMNS, display_frame, gain_summary

# Which field of a measurement file holds each metric reported.csv names.
MEASURED_FIELDS = {
    "mean_cosine": "mean",
    "min_cosine": "min",
    "max_cosine": "max",
    "memory_overhead_vs_mae": "nor_over_mae_memory",
    "time_overhead_vs_mae": "nor_over_mae_time",
}
# Metrics that are a percentage of evaluation images: one evaluation's value carries a binomial error.
PERCENT_METRICS = ("top1", "top5", "best_top1")


def read_result(path: Path) -> dict:
    """A table's input file; a missing one says which target makes it."""
    result = read_json(path, f"run `snakemake {path}` (or the table's target) first")
    if not isinstance(result, dict):
        raise MissingResultError(f"{path} holds no result (a JSON object): delete it and rerun what writes it")
    return result


def run_summary(layout: ResultsLayout, run_id: str) -> dict:
    """The run's summary.json, which must say it is this run's: its ``run_id`` and its ``spec`` (whose run id
    must be ``run_id``)."""
    path = layout.run(run_id).summary_path
    summary = read_result(path)
    if summary.get("run_id") != run_id:
        raise MissingResultError(
            f"{path} is not the summary of run {run_id} (its run_id is {summary.get('run_id')!r}): "
            "delete it and rerun the run"
        )
    if not isinstance(summary.get("spec"), dict):
        raise MissingResultError(f"{path} holds no spec (a JSON object under 'spec'): delete it and rerun the run")
    check_summary_spec(summary, run_id, path)
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
    summary = run_summary(layout, run_id)
    return result_value(summary, reported_metric(summary, metric), layout.run(run_id).summary_path)


def reported_metric(summary: dict, metric: str) -> str:
    """The authors' convention for top-1: the best epoch's, as main_finetune.py prints "Max accuracy";
    a one-pass evaluation (k-NN) has no epochs and reports its top-1 as it is."""
    return "best_top1" if metric == "top1" and summary.get("best_top1") is not None else metric


def _mean_and_spread(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _first_epoch_share(layout: ResultsLayout, pretrain_ids: list[str]) -> float | None:
    """The mean over a row's NoR-MAE pre-trainings of their first-epoch ``nor_grad_share`` (None if unrecorded)."""
    shares = []
    for run_id in pretrain_ids:
        if not layout.run(run_id).summary_path.is_file():  # the evaluation's own check covers its pre-training
            continue
        diagnostics = run_summary(layout, run_id).get("diagnostics") or {}
        value = (diagnostics.get("nor_grad_share") or {}).get("first_epoch")
        if isinstance(value, (int, float)) and math.isfinite(value):
            shares.append(float(value))
    return statistics.fmean(shares) if shares else None


def _fill_ours(record: dict, values: list[float], images: int | None) -> None:
    """ours: the mean over seeds, its spread and 95 % Student-t interval, the per-seed values and, for a
    single evaluation of an accuracy, its binomial standard error over the evaluation images."""
    estimate = mean_interval(values)
    record["ours"], record["ours_std"] = _mean_and_spread(values)
    record["ours_low"], record["ours_high"] = estimate.low, estimate.high
    record["ours_values"] = " ".join(repr(float(v)) for v in values)
    record["seeds"] = len(values)
    record["eval_images"] = images
    if len(values) == 1 and images and record["metric"] in PERCENT_METRICS:
        record["ours_se"] = binomial_se(values[0], images)


def _eval_images(summary: dict) -> int | None:
    final = summary.get("final")
    images = summary.get("eval_images", final.get("eval_images") if isinstance(final, dict) else None)
    return images if isinstance(images, int) and not isinstance(images, bool) and images > 0 else None


def _ran(row: Row, plan: Plan) -> dict:
    """What the row's pre-training ran where the scale changed the paper's term (``<term>_ran``); a row with no
    pre-training (a randomly initialised encoder) ran its evaluation's encoder."""
    if row.pretrain_ids and row.pretrain_ids[0] in plan.pretrain:
        spec = plan.pretrain[row.pretrain_ids[0]].to_dict()
    elif row.eval_ids and row.eval_ids[0] in plan.evaluations:
        spec = plan.evaluations[row.eval_ids[0]].to_dict()
    else:
        return {}
    return {f"{term}_ran": spec[field] for term, field in RAN_TERMS.items() if field in spec}


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
            "ours_low": None,
            "ours_high": None,
            "ours_se": None,
            "ours_values": None,
            "ours_seeds": None,
            "seeds": None,
            "eval_images": None,
            "source": None,
            "pretrain_ids": " ".join(row.pretrain_ids),
            "eval_ids": " ".join(row.eval_ids),
            "reason": row.reason,
            **_ran(row, plan),
        }
        if row.status == "run":
            summaries = [run_summary(layout, run_id) for run_id in row.eval_ids]
            values = [
                result_value(summary, reported_metric(summary, str(base["metric"])), layout.run(run_id).summary_path)
                for summary, run_id in zip(summaries, row.eval_ids)
            ]
            images = {_eval_images(summary) for summary in summaries}
            _fill_ours(base, values, images.pop() if len(images) == 1 else None)
            base["ours_seeds"] = " ".join(str(plan.evaluations[run_id].seed) for run_id in row.eval_ids)
            if row.terms.get("method") == "nor_mae":
                base["nor_grad_share"] = _first_epoch_share(layout, row.pretrain_ids)
        elif row.status == "analysis":
            values = [
                result_value(read_result(layout.pca(run_id)), "mean_pairwise_cosine_cnp", layout.pca(run_id))
                for run_id in row.pretrain_ids
            ]
            base["metric"] = "cnp_pairwise_cosine"
            _fill_ours(base, values, None)
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
    if table.measure == "cost":  # the bench run's summary: which device, precision and images measured it
        path = layout.run(table.rows[int(base["row"])].eval_ids[0]).summary_path
        measured = read_result(path)
        setting = (
            f"bench {measured.get('model')} {measured.get('img_size')} px patch {measured.get('patch_size')} "
            f"batch {measured.get('batch_size')} on {measured.get('device')}, {measured.get('amp')}, "
            f"{measured.get('images')} images"
        )
        return [{**base, "ours": result_value(measured, field, path), "source": setting}]
    records = []
    for source in plan.scale.analysis["cnp_similarity"]:
        path = layout.cnp_similarity(source)
        records.append({**base, "ours": result_value(read_result(path), field, path), "source": source})
    return records


def table_frame(table: TablePlan, plan: Plan, root: str | Path = ".") -> pd.DataFrame:
    frame = pd.DataFrame.from_records(row_records(table, plan, ResultsLayout(Path(root))))
    for column in ("paper", "ours", "ours_std", "ours_low", "ours_high", "ours_se", "nor_grad_share"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column])
    frame = add_pretraining_effect(add_gains(frame))
    frame.insert(list(frame.columns).index("ours") + 1, "scale", plan.scale.name)
    return frame


def header_lines(table: TablePlan, plan: Plan) -> list[str]:
    scale = plan.scale
    lines = [table.title, f"Scale: {scale.name} ({scale.description}); seeds {table.seeds or plan.seeds}."]
    lines.append("At this scale: " + ("; ".join(table.mapping) or "the paper's settings") + ".")
    if scale.name != "paper":
        lines.append(
            f"Our numbers were measured at the {scale.name} scale, not the paper's: they are not "
            "expected to match the paper's values; compare signs and orderings, not magnitudes."
        )
    if scale.header:
        lines.append(scale.header)
    if scale.per_table.get(table.name, {}).get("header"):
        lines.append(scale.per_table[table.name]["header"])
    if any(row.eval_ids and row.terms.get("eval") in ("finetune", "linprobe") for row in table.rows):
        lines.append(
            "Top-1 of a fine-tuning or linear-probing run is its best epoch's, as the authors' "
            "main_finetune.py prints it (summary.json keeps the last epoch's as top1)."
        )
    if any(row.eval_ids and row.terms.get("eval") == "segmentation" for row in table.rows):
        lines.append(
            "mIoU of a segmentation run is its last epoch's, single-scale with sliding windows (MAE's "
            "protocol through mmsegmentation); each run's summary.json holds the majority-class floor ('trivial')."
        )
    return lines


def write_table(frame: pd.DataFrame, table: TablePlan, plan: Plan, out_dir: str | Path) -> list[Path]:
    """results/tables/<file>.csv (every column), .md, .tex and .html (the readable columns, with the header;
    the .html is the report's page, its header lines as captions)."""
    from normae.report.html import table_page

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / table.file
    header = header_lines(table, plan) + [line for line in [gain_summary(frame)] if line]
    header += [READING] if (frame["status"] == "run").any() else []
    frame.to_csv(f"{stem}.csv", index=False)
    shown, common = display_frame(frame)
    header += [common] if common else []
    markdown = (
        "\n\n".join([f"## {header[0]}", *header[1:], shown.to_markdown(index=False, disable_numparse=True)]) + "\n"
    )
    Path(f"{stem}.md").write_text(markdown)
    Path(f"{stem}.tex").write_text(paper_table_tex(frame, *tex_caption_and_notes(frame, table, plan)))
    Path(f"{stem}.html").write_text(table_page(header[0], header[1:], shown))
    return [Path(f"{stem}.{suffix}") for suffix in ("csv", "md", "tex", "html")]


def tex_caption_and_notes(frame: pd.DataFrame, table: TablePlan, plan: Plan) -> tuple[str, list[str], str]:
    """The .tex's short caption (no "Table N:", which LaTeX's caption prints itself: the paper's number is
    named after the topic), its notes (the full title where the caption shortened it, the scale and its
    mapping, the gain summary) and its label."""
    reference, _, topic = table.title.partition(": ")
    paper = re.fullmatch(r"(Table|Figure) \d+", reference)
    caption = re.sub(r" \([^()]*\)", "", topic if paper else table.title)  # asides go to the notes
    caption += f" (the paper's {reference})" if paper else ""
    notes = [] if paper and caption.startswith(topic) else [table.title + "."]
    notes += header_lines(table, plan)[1:] + [line for line in [gain_summary(frame)] if line]
    if frame["status"].isin(["not_run", "cited"]).any():
        notes.append(f"Why a row is not run or only cited: {table.file}.md.")
    label = "tab:" + table.file.replace("_", "-")  # an underscore needs escaping outside \label
    return f"{caption}; ours at the {plan.scale.name} scale.", notes, label


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
                **{  # NoR-MAE's diagnostics: run mean and first-epoch mean (summary.json's "diagnostics")
                    f"{name}_{which}": value
                    for name, means in summary.get("diagnostics", {}).items()
                    for which, value in means.items()
                    if which != "samples"
                },
                "best_top1": summary.get("best_top1"),
                "epochs_run": summary.get("epochs"),
                "step_time_median_s": summary.get("step_time_median_s"),
                "wall_seconds": summary.get("wall_seconds_this_session"),
                "run_dir": str(layout.run(run_id).path),
            }
        )
    return pd.DataFrame.from_records(records)
