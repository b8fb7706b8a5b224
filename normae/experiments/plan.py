"""The paper's tables (config/experiments.yaml) at one scale (config/scales/<name>.yaml) -> unique run specs.

A run that several tables need is planned once: runs are keyed by spec digest, named by
``run_id()``. Every table row, from the grid or from config/reported.csv, ends up with a run id,
a paper value it is compared with, or the reason it is not run. No torch import here: login-node
processes plan too.
"""

from __future__ import annotations

from normae.errors import ConfigError
from normae.experiments.config import (
    ANALYSES,
    AUTHORS_CODE_GRID,
    EVAL_SPECS,
    GRID_EVALUATE,
    MEASUREMENTS,
    NO_PRETRAINING,
    NOT_IMPLEMENTED,
    PAPER_IMG_SIZE,
    SEED_COUNT,
    Scale,
    as_list,
    grid_points,
    load_experiments,
    load_scale,
    read_reported,
)
from normae.experiments.data_map import folder_for
from normae.experiments.faithful import check_lam_scale_keys, scaled_lam
from normae.experiments.mapping import measure_mapping, scale_mapping
from normae.experiments.plan_types import Plan, Row, TablePlan
from normae.paths import ResultsLayout
from normae.spec import DISTILLED_METHODS, NOR_METHODS, BenchSpec, FinetuneSpec, KnnSpec, LinprobeSpec, PretrainSpec
from normae.spec.pretrain import pass_minimum

# The plan's inputs are re-exported with it: a caller reads the config and expands it through one module.
__all__ = ["REPORTED_KEYS", "Plan", "Row", "TablePlan", "expand", "load_experiments", "load_scale", "read_reported"]

REPORTED_KEYS = (
    "model",
    "pretrain_dataset",
    "method",
    "pretrain_epochs",
    "patch_size",
    "mask_ratio",
    "lam",
    "eval_dataset",
    "eval",
)


# ---------------------------------------------------------------- the plan


def _reported_key(row: dict) -> tuple:
    def number(text):
        return float(text) if text not in ("", None) else None

    return (
        row["model"],
        row["pretrain_dataset"],
        row["method"],
        int(row["pretrain_epochs"]),
        int(row["patch_size"]),
        number(row["mask_ratio"]),
        number(row["lam"]) or 0.0,
        row["eval_dataset"],
        row["eval"],
    )


def _point_key(point: dict, protocol: str, eval_dataset: str) -> tuple:
    return (
        point["model"],
        point["dataset"],
        point["method"],
        point["epochs"],
        point["patch_size"],
        float(point["mask_ratio"]),
        float(point.get("lam", 0.0)),
        eval_dataset,
        protocol,
    )


def _terms(point: dict, protocol: str, eval_dataset: str) -> dict:
    """A grid point in reported.csv's column names, so rows of both sources read alike."""
    renamed = {"dataset": "pretrain_dataset", "epochs": "pretrain_epochs"}
    return {**{renamed.get(k, k): v for k, v in point.items()}, "eval_dataset": eval_dataset, "eval": protocol}


class _Planner:
    """Collects unique specs across tables while rows are built."""

    def __init__(self, scale: Scale, seeds: list[int], data: dict | None = None):
        self.scale = scale
        self.seeds = seeds
        self.data = data  # the data map: data set -> folder (normae.experiments.data_map)
        self.pretrain: dict[str, PretrainSpec] = {}
        self.evaluations: dict[str, FinetuneSpec | LinprobeSpec | KnnSpec] = {}
        self.measurements: dict[str, BenchSpec] = {}  # bench runs (the cost claim)

    def _add(self, store: dict, spec) -> str:
        for run_id, known in store.items():
            if known.digest() == spec.digest():
                return run_id
        store[spec.run_id()] = spec
        return spec.run_id()

    def pretrain_spec(self, point: dict, seed: int = 0) -> tuple[PretrainSpec | None, str | None]:
        mapped = {}
        for kind, term in (
            ("models", "model"),
            ("datasets", "dataset"),
            ("patch_sizes", "patch_size"),
            ("pretrain_epochs", "epochs"),
        ):
            mapped[term], reason = self.scale.map(kind, point[term])
            if reason:
                return None, f"{term} {point[term]}: {reason}"
        extra = {k: point[k] for k in ("lam", "cnp", "nor_variant") if k in point}
        if point["method"] not in NOR_METHODS:
            extra["lam"] = 0.0
        elif "lam" in point:
            extra["lam"], _ = scaled_lam(self.scale.lam_scale, point)
        settings = dict(self.scale.pretrain)
        if isinstance(settings.get("global_batch"), dict):  # per paper data set: ImageNet-1K 4096, ImageNet-100 2048
            if point["dataset"] not in settings["global_batch"]:
                raise ConfigError(f"scale {self.scale.name}: pretrain.global_batch has no entry for {point['dataset']}")
            settings["global_batch"] = settings["global_batch"][point["dataset"]]
        if point["method"] in DISTILLED_METHODS:
            extra["teacher"], extra["teacher_model"], reason = self.teacher(mapped, point["mask_ratio"], settings)
            if reason:
                return None, reason
        spec = PretrainSpec(
            **mapped,
            data_root=folder_for(self.data, mapped["dataset"]),
            method=point["method"],
            mask_ratio=point["mask_ratio"],
            **extra,
            **{"seed": seed, **self.pass_cut(settings, point["method"])},
        )
        return spec, None

    def pass_cut(self, settings: dict, method: str) -> dict:
        """The rehearsal's forward pass: the fewest images ``method`` trains on (``smallest_pass``); the
        global batch, and so the run id, stays."""
        if not self.scale.smallest_pass:
            return settings
        hidden = settings.get("sup_hidden", PretrainSpec.sup_hidden)
        return {**settings, "batch_size": pass_minimum(method, hidden)[0]}

    def teacher(self, mapped: dict, mask_ratio: float, settings: dict) -> tuple[str | None, str, str | None]:
        """(checkpoint, model size, None) of the scale's DMAE teacher, or (None, "", why it is not run)."""
        teacher = self.scale.teacher
        if not teacher:
            return None, "", f"scale {self.scale.name} names no DMAE teacher (its teacher: block)"
        if not teacher.get("pretrain"):
            if not teacher.get("checkpoint"):
                where = f"config/scales/{self.scale.name}.yaml"
                return None, "", f"set teacher.checkpoint in {where}: an MAE {teacher['model']} file"
            return teacher["checkpoint"], teacher["model"], None
        # the stand-in teacher: MAE at the teacher's size on the student's data, patch and schedule (seed 0)
        spec = PretrainSpec(
            **{**mapped, "model": teacher["model"]},
            data_root=folder_for(self.data, mapped["dataset"]),
            method="mae",
            lam=0.0,
            mask_ratio=mask_ratio,
            **{**self.pass_cut(settings, "mae"), "seed": 0},
        )
        return str(ResultsLayout().run(self._add(self.pretrain, spec)).checkpoint_path), teacher["model"], None

    def row(self, table: str, point: dict, protocol: str, eval_dataset: str, seeds: list[int]) -> Row:
        terms = _terms(point, protocol, eval_dataset)
        for blocker in (point["method"], protocol):
            if blocker in NOT_IMPLEMENTED:
                return Row(table, terms, "not_implemented", reason=NOT_IMPLEMENTED[blocker])
        eval_set, reason = self.scale.map("datasets", eval_dataset)
        if reason:
            return Row(table, terms, "not_run", reason=f"evaluation set {eval_dataset}: {reason}")
        no_pretraining = point["method"] == NO_PRETRAINING  # mapped as MAE's, which it stands before
        _, reason = self.pretrain_spec({**point, "method": "mae"} if no_pretraining else point)
        if reason:
            return Row(table, terms, "not_run", reason=reason)
        if no_pretraining:
            return self.random_init_row(table, point, terms, protocol, eval_set, seeds)
        row = Row(table, terms, "analysis" if protocol in ANALYSES else "run")
        for seed in seeds:
            spec, _ = self.pretrain_spec(point, seed)
            assert spec is not None  # the point maps at this scale: checked above
            pretrain_id = self._add(self.pretrain, spec)
            row.pretrain_ids.append(pretrain_id)
            if protocol in ANALYSES:
                continue
            overrides = getattr(self.scale, protocol)  # the scale's block of settings for this protocol
            evaluation = EVAL_SPECS[protocol](
                init=str(ResultsLayout().run(pretrain_id).checkpoint_path),
                dataset=eval_set,
                data_root=folder_for(self.data, eval_set),
                model=spec.model,
                patch_size=spec.patch_size,
                **{"seed": seed, **overrides},
            )
            row.eval_ids.append(self._add(self.evaluations, evaluation))
        return row

    def random_init_row(self, table: str, point: dict, terms: dict, protocol: str, eval_set: str, seeds) -> Row:
        """The floor pre-training must clear: the encoder as initialised with each seed, evaluated."""
        if protocol not in EVAL_SPECS:
            return Row(table, terms, "not_run", reason=f"{NO_PRETRAINING} has nothing to show for {protocol}")
        row = Row(table, terms, "run")
        for seed in seeds:
            spec, _ = self.pretrain_spec({**point, "method": "mae"}, seed)
            assert spec is not None  # the point maps at this scale: checked by the caller
            evaluation = EVAL_SPECS[protocol](
                init="none",
                dataset=eval_set,
                data_root=folder_for(self.data, eval_set),
                model=spec.model,
                patch_size=spec.patch_size,
                img_size=spec.img_size,
                **{"seed": seed, **getattr(self.scale, protocol)},
            )
            row.eval_ids.append(self._add(self.evaluations, evaluation))
        return row


def expand(
    experiments: dict,
    scale: Scale,
    reported: list[dict] | None = None,
    seeds: list[int] | None = None,
    data: dict | None = None,
) -> Plan:
    """Every table's grid at this scale and seeds, linked to the paper's rows; ``data``: the data map
    (data set -> folder), written into every spec's ``data_root``.

    A reported row that no grid covers is an error.
    """
    reported = read_reported() if reported is None else reported
    seeds = list(seeds or scale.seeds or [0])
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    check_lam_scale_keys(scale.name, scale.lam_scale, _nor_points(experiments))
    check_table_files(experiments)
    planner = _Planner(scale, seeds, data)
    tables = {}
    for key in ("tables", "per_table"):
        unknown_tables = sorted(set(getattr(scale, key) or ()) - set(experiments))
        if unknown_tables:
            raise ConfigError(f"scale {scale.name}: {key} names {unknown_tables}, not tables of experiments.yaml")
    for name, table in experiments.items():
        if scale.tables is not None and name not in scale.tables:
            continue
        paper_rows = [r for r in reported if r["table"] == name]
        table = at_scale(name, table, scale)
        if table["measure"]:
            rows = [_measure_row(name, table["measure"], r, planner) for r in paper_rows]
        else:
            rows = _grid_rows(name, table, paper_rows, planner)
        mapping = measure_mapping(table["measure"], scale) if table["measure"] else scale_mapping(rows, scale)
        tables[name] = TablePlan(
            name, table["file"], table["title"], mapping, rows, table["measure"], table.get("sweep"), table["seeds"]
        )
    unknown = sorted({r["table"] for r in reported} - set(experiments))
    if unknown:
        raise ConfigError(f"reported.csv has tables {unknown} that experiments.yaml does not declare")
    return Plan(scale, planner.pretrain, planner.evaluations, tables, seeds, dict(data or {}), planner.measurements)


def at_scale(name: str, table: dict, scale: Scale) -> dict:
    """The table as ``scale`` runs it: its ``per_table`` block's seeds (None: the plan's) and protocols, each
    on the table's evaluation sets, laid over experiments.yaml's; a grid's own evaluate stays as it is. Its
    ``not_run`` (None: the table runs) is why the scale runs none of the table's rows."""
    settings = scale.per_table.get(name, {})
    if table["measure"] and "protocols" in settings:
        raise ConfigError(
            f"scale {scale.name}: per_table.{name}.protocols: {name} is a measurement, it evaluates nothing"
        )
    evaluate = table["evaluate"]
    if "protocols" in settings:
        datasets = list(dict.fromkeys(d for entry in evaluate for d in as_list(entry["dataset"])))
        evaluate = [{"protocol": protocol, "dataset": datasets} for protocol in settings["protocols"]]
    seeds = list(settings["seeds"]) if "seeds" in settings else None
    return {**table, "evaluate": evaluate, "seeds": seeds, "not_run": settings.get("not_run")}


def _nor_points(experiments: dict) -> list[dict]:
    """Every NoR-MAE grid point with a lambda, of every table (the scale's or not): what lam_scale may name."""
    return [
        point
        for table in experiments.values()
        for grid in table.get("grids") or ()
        for point in grid_points(grid, table["cnp_modes"])
        if point["method"] in NOR_METHODS and "lam" in point
    ]


def check_table_files(experiments: dict) -> None:
    """Refuse two tables writing the same file: the later one's table would silently replace the other's."""
    owners: dict[str, str] = {}
    for name, table in experiments.items():
        if table["file"] in owners:
            raise ConfigError(
                f"experiments.yaml: tables {owners[table['file']]} and {name} both have file: {table['file']}; "
                "give each table its own file"
            )
        owners[table["file"]] = name


def _grid_rows(name: str, table: dict, paper_rows: list[dict], planner: _Planner) -> list[Row]:
    by_key: dict[tuple, list[dict]] = {}
    for paper_row in paper_rows:
        by_key.setdefault(_reported_key(paper_row), []).append(paper_row)
    rows, matched = [], set()
    table_seeds = table["seeds"] or planner.seeds
    for grid in table["grids"]:
        seeds = table_seeds[: grid.get(SEED_COUNT, len(table_seeds))]
        for point in grid_points(grid, table["cnp_modes"]):
            doubled_out = "cnp" not in grid and point.get("cnp", "paper") not in planner.scale.cnp_modes
            off_grid = _authors_code_off_grid(point)
            for entry in as_list(grid.get(GRID_EVALUATE, table["evaluate"])):
                for eval_dataset in as_list(entry["dataset"]):
                    terms = _terms(point, entry["protocol"], eval_dataset)
                    if table["not_run"]:
                        row = Row(name, terms, "not_run", reason=f"scale {planner.scale.name}: {table['not_run']}")
                    elif doubled_out:
                        row = Row(
                            name,
                            terms,
                            "not_run",
                            reason=f"cnp {point['cnp']}: this scale runs the table's NoR-MAE rows with "
                            f"cnp {' / '.join(planner.scale.cnp_modes)} only (the ablation table compares modes)",
                        )
                    elif off_grid and "cnp" not in grid:  # doubled by cnp_modes: only where their code runs
                        row = Row(
                            name, terms, "not_run", reason=f"{off_grid}: name cnp authors_code in the grid to run it"
                        )
                    else:
                        row = planner.row(name, point, entry["protocol"], eval_dataset, seeds)
                        if off_grid and row.status == "run":
                            row.reason = f"extrapolated: {off_grid}"
                    key = _point_key(point, entry["protocol"], eval_dataset)
                    if key in by_key:
                        matched.add(key)
                        row.paper_value, row.metric = float(by_key[key][0]["value"]), by_key[key][0]["metric"]
                    if row not in rows:
                        rows.append(row)
    for paper_row in (rows_of_key[0] for key, rows_of_key in by_key.items() if key not in matched):
        if paper_row["ran_by_paper"] != "no":
            raise ConfigError(f"{name}: reported.csv row {dict(paper_row)} matches no grid point in experiments.yaml")
        terms = {k: paper_row[k] for k in REPORTED_KEYS}
        rows.append(
            Row(
                name,
                terms,
                "cited",
                float(paper_row["value"]),
                paper_row["metric"],
                reason=f"cited by the paper ({paper_row['note']}), not run",
            )
        )
    return rows


def _authors_code_off_grid(point: dict) -> str | None:
    """Why the authors' code cannot run this NoR-MAE point's CNP as published (None: it can)."""
    if point.get("cnp") != "authors_code":
        return None
    side = PAPER_IMG_SIZE // point["patch_size"]
    if side == AUTHORS_CODE_GRID:
        return None
    return (
        f"the authors' code's CNP on a {side}x{side} grid (patch {point['patch_size']}); their public code "
        f"runs only {AUTHORS_CODE_GRID}x{AUTHORS_CODE_GRID} (224 px, patch 16)"
    )


def _measure_row(name: str, measure: str, paper_row: dict, planner: _Planner) -> Row:
    """A measured row; the cost claim's is a bench run (a stage the launcher sends to a job like any run)."""
    terms = {k: paper_row[k] for k in REPORTED_KEYS}
    value, metric = float(paper_row["value"]), paper_row["metric"]
    _, reason = planner.scale.map("datasets", paper_row["eval_dataset"])
    if reason:
        return Row(name, terms, "not_run", value, metric, reason=reason)
    row = Row(name, terms, "measure", value, metric, reason=f"measured by `{MEASUREMENTS[measure]}`")
    if measure == "cost":
        settings = planner.scale.analysis["cost"]
        bench = BenchSpec(**settings, data_root=folder_for(planner.data, settings.get("dataset") or ""))
        row.eval_ids.append(planner._add(planner.measurements, bench))
        row.reason = f"measured by the bench run {bench.run_id()} on its job's device"
    return row
