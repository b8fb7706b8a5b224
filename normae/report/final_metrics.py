"""The final metrics of finished runs side by side, as a plain-text table (``normae summarize``; torch-free).

Read from each run's summary.json; not to be confused with the plan's printout (normae.experiments)."""

from __future__ import annotations

from pathlib import Path

from normae.paths import RunFolder

SUMMARY_COLUMNS = {
    "loss_rec": "masked-patch MSE on normalised pixels (last epoch mean)",
    "loss_nor": "NoR penalty before lambda (last epoch mean)",
    "top1": "top-1 % on the evaluation split (last epoch)",
    "best_top1": "best top-1 % over epochs",
    "step_s": "median seconds per optimiser step (last session)",
}


def describe_method(summary: dict) -> str:
    spec = summary["spec"]
    if summary["stage"] == "pretrain":
        if spec["method"] == "nor_mae":
            return f"nor_mae ({spec['cnp']} CNP, lambda {spec['lam']:g})"
        return spec["method"]
    return f"{summary['stage']} on {spec['dataset']} from {summary.get('init', spec['init'])}"


def final_metrics_table(runs: list[str | Path]) -> str:
    """One row per finished run folder, then a line saying what each column means."""
    rows = []
    for run in runs:
        summary = RunFolder(run).require_summary()
        values = {
            **summary["final"],
            "best_top1": summary.get("best_top1"),
            "step_s": summary.get("step_time_median_s"),
        }
        row = {"run": Path(run).name, "what": describe_method(summary), "epochs": str(summary["epochs"])}
        for column in SUMMARY_COLUMNS:
            value = values.get(column)
            row[column] = "-" if value is None else f"{value:.4g}"
        rows.append(row)
    widths = {key: max(len(key), *(len(row[key]) for row in rows)) for key in rows[0]}
    lines = ["  ".join(key.ljust(width) for key, width in widths.items())]
    lines += ["  ".join(row[key].ljust(width) for key, width in widths.items()) for row in rows]
    lines.append("; ".join(f"{name}: {meaning}" for name, meaning in SUMMARY_COLUMNS.items()))
    return "\n".join(lines)
