"""Is a plan the same? Compares two ``normae plan --scale S --json`` outputs run by run.

Usage: ``python bench/same_plan.py BEFORE.json AFTER.json [CHANGED_TABLE,...]``

A run both plans hold must keep its whole entry (run id, spec, learning rate); only the tables it
serves may grow, and only by a table named as changed. A run only the second plan holds must serve
changed tables only, and no run may disappear. Exits 1 otherwise. With no table named, the two plans
must hold the same runs with the same entries.
"""

import json
import sys
from pathlib import Path


def tables_served(entry: dict) -> set[str]:
    return {serve["table"] for serve in entry["serves"]}


def main(before_json: str, after_json: str, changed_tables: str = "") -> int:
    named = set(filter(None, changed_tables.split(",")))
    before, after = (json.loads(Path(path).read_text()) for path in (before_json, after_json))
    runs_before, runs_after = ({run["run_id"]: run for run in plan["runs"]} for plan in (before, after))
    both = [run for run in runs_before if run in runs_after]

    def without_serves(entry: dict) -> dict:
        return {key: value for key, value in entry.items() if key != "serves"}

    removed = sorted(set(runs_before) - set(runs_after))
    added = sorted(set(runs_after) - set(runs_before))
    changed = [run for run in both if without_serves(runs_before[run]) != without_serves(runs_after[run])]
    gained = {run: tables_served(runs_after[run]) - tables_served(runs_before[run]) for run in both}
    serve_unnamed = [run for run in both if not gained[run] <= named]
    serve_lost = [run for run in both if not tables_served(runs_before[run]) <= tables_served(runs_after[run])]
    added_unnamed = [run for run in added if not tables_served(runs_after[run]) <= named]
    tables_new = [table for table in after["tables"] if table not in before["tables"]]
    print(
        f"runs {len(runs_before)} -> {len(runs_after)}: removed {len(removed)}, added {len(added)} "
        f"({len(added_unnamed)} serving a table not named as changed), entries changed {len(changed)}, "
        f"tables served gained outside the changed {len(serve_unnamed)}, lost {len(serve_lost)}; "
        f"tables added {tables_new}"
    )
    tables_unnamed = [table for table in tables_new if table not in named]
    problems = removed + changed + serve_unnamed + serve_lost + added_unnamed + tables_unnamed
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
