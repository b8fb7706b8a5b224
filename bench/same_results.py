"""Are two tiny runs' results the same? Compares two ``results/all_runs.csv``, timings aside.

Usage: ``python bench/same_results.py BEFORE/results/all_runs.csv AFTER/results/all_runs.csv``

A refactor must leave every number where it was: on the run ids both files hold, each column but the
timings (``step_time_median_s``, ``wall_seconds``) and the folder path must agree (numbers to a relative
1e-6). Prints each difference and a count; exits 1 when a value differs.
"""

import math
import sys

import pandas as pd

NOT_COMPARED = {"step_time_median_s", "wall_seconds", "run_dir"}


def same_value(x: object, y: object) -> bool:
    """Numbers to a relative 1e-6 (a number against an empty cell differs), anything else as text."""
    try:
        return math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-9)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(x) == str(y)


def main(before_csv: str, after_csv: str) -> int:
    before, after = (pd.read_csv(path).set_index("run_id") for path in (before_csv, after_csv))
    common = before.index.intersection(after.index)
    only_before, only_after = before.index.difference(after.index), after.index.difference(before.index)
    print(
        f"runs: {len(before)} before, {len(after)} after, {len(common)} in both "
        f"(only before {len(only_before)}, only after {len(only_after)})"
    )
    print(f"columns only before: {sorted(set(before.columns) - set(after.columns))}")
    print(f"columns only after: {sorted(set(after.columns) - set(before.columns))}")
    columns = sorted((set(before.columns) & set(after.columns)) - NOT_COMPARED)
    compared = differing = 0
    for column in columns:
        for run in common:
            x, y = before.at[run, column], after.at[run, column]
            if pd.isna(x) and pd.isna(y):
                continue
            compared += 1
            if not same_value(x, y):
                differing += 1
                print(f"differs: {run} {column}: {x!r} -> {y!r}")
    print(f"values compared: {compared}, differing: {differing}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
