"""What the configuration says: the paper's tables as grids (config/experiments.yaml), a scale's
mapping of the paper's settings (config/scales/<name>.yaml) and the paper's numbers
(config/reported.csv), each read and checked, with every unknown key named. No torch import."""

from __future__ import annotations

import csv
import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from normae.spec import FinetuneSpec, LinprobeSpec, PretrainSpec

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"

PRETRAIN_TERMS = ("model", "dataset", "method", "epochs", "patch_size", "mask_ratio", "lam", "cnp", "nor_variant")
NOR_LOSS_TERMS = ("lam", "cnp", "nor_variant")
METHODS_WITHOUT_NOR_LOSS = ("mae", "sup_mae")
TABLE_KEYS = {"file", "sweep", "title", "pretrain", "variants", "evaluate", "measure", "cnp_modes"}
EVALUATE_KEYS = {"protocol", "dataset"}
SCALE_KEYS = {"description", "datasets", "models", "patch_sizes", "pretrain_epochs",
              "pretrain", "finetune", "linprobe", "throughput", "cnp_modes", "analysis"}
ANALYSIS_KEYS = {"cnp_similarity", "pca", "cost"}
CNP_MODES = ("paper", "authors_code", "random")
PAPER_IMG_SIZE = 224
PAPER_FINETUNE_EPOCHS = 100

EVAL_SPECS = {"finetune": FinetuneSpec, "linprobe": LinprobeSpec}
ANALYSES = {"pca": "PCA of visible vs CNP features of the pre-trained encoder (analysis stage)"}
MEASUREMENTS = {"cnp_similarity": "normae cnp-stats", "cost": "normae bench"}
NOT_IMPLEMENTED = {
    "sup_mae": "supervised MAE (sup_mae) is not implemented",
    "sup_nor_mae": "supervised NoR-MAE (sup_nor_mae) is not implemented",
    "nor_dmae": "NoR-MAE with a distillation teacher (nor_dmae) is not implemented",
    "segmentation": "ADE20K segmentation is not implemented",
}


def _check_keys(where: str, data: dict, allowed) -> None:
    unknown = sorted(set(data) - set(allowed), key=str)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed, key=str)}")


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- experiments.yaml

def load_experiments(path: str | Path = CONFIG_DIR / "experiments.yaml") -> dict:
    """The tables of experiments.yaml, each normalised to a list of grids and a list of evaluations."""
    data = yaml.safe_load(Path(path).read_text())
    _check_keys(str(path), data, {"defaults", "tables"})
    defaults = data.get("defaults", {})
    _check_keys(f"{path}: defaults", defaults, {"pretrain"})
    base = defaults.get("pretrain", {})
    _check_keys(f"{path}: defaults.pretrain", base, PRETRAIN_TERMS)
    tables = {}
    for name, table in data["tables"].items():
        where = f"{path}: table {name}"
        _check_keys(where, table, TABLE_KEYS)
        if "measure" in table:
            if table["measure"] not in MEASUREMENTS:
                raise ValueError(f"{where}: measure must be one of {sorted(MEASUREMENTS)}, got {table['measure']!r}")
            tables[name] = {"file": table["file"], "title": table["title"], "measure": table["measure"],
                            "grids": [], "evaluate": []}
            continue
        grid = {**base, **table.get("pretrain", {})}
        _check_keys(f"{where}: pretrain", grid, PRETRAIN_TERMS)
        for variant in table.get("variants", []):
            _check_keys(f"{where}: variants", variant, PRETRAIN_TERMS)
        grids = [{**grid, **variant} for variant in table.get("variants", [])] or [grid]
        evaluate = as_list(table["evaluate"])
        for entry in evaluate:
            _check_keys(f"{where}: evaluate", entry, EVALUATE_KEYS)
            if entry["protocol"] not in {*EVAL_SPECS, *ANALYSES, *NOT_IMPLEMENTED}:
                raise ValueError(f"{where}: unknown evaluate protocol {entry['protocol']!r}")
        cnp_modes = table.get("cnp_modes", ["paper"])
        for mode in cnp_modes:
            if mode not in CNP_MODES:
                raise ValueError(f"{where}: cnp_modes holds {mode!r}; use paper, authors_code or random")
        tables[name] = {"file": table["file"], "sweep": table.get("sweep"), "title": table["title"], "measure": None, "grids": grids,
                        "evaluate": evaluate, "cnp_modes": cnp_modes}
    return tables


def grid_points(grid: dict, cnp_modes: list[str]) -> list[dict]:
    """The cartesian product of a grid, NoR-loss terms dropped where there is no NoR loss, duplicates removed.

    Each NoR-MAE point is repeated for every CNP mode unless the grid names the mode itself.
    """
    keys = list(grid)
    points = []
    for values in itertools.product(*(as_list(grid[k]) for k in keys)):
        point = dict(zip(keys, values))
        if point["method"] in METHODS_WITHOUT_NOR_LOSS:
            point = {k: v for k, v in point.items() if k not in NOR_LOSS_TERMS}
        elif point["method"] == "nor_mae":
            point.setdefault("nor_variant", "offdiag")
        if point["method"] == "nor_mae" and "cnp" not in point:
            for mode in cnp_modes:
                points.append({**point, "cnp": mode})
            continue
        points.append(point)
    unique = []
    for point in points:
        if point not in unique:
            unique.append(point)
    return unique


# ---------------------------------------------------------------- scales

@dataclass
class Scale:
    """How the paper's settings map to what runs at one scale; a mapped value of None means 'not run'."""

    name: str
    description: str
    datasets: dict
    models: dict
    patch_sizes: dict
    pretrain_epochs: dict
    pretrain: dict
    finetune: dict
    linprobe: dict
    throughput: dict
    not_run: dict = field(default_factory=dict)  # (kind, paper value) -> reason
    cnp_modes: tuple = CNP_MODES  # the CNP modes a table's cnp_modes may double NoR-MAE rows into here
    analysis: dict = field(default_factory=dict)  # settings of the measurements: cnp_similarity, pca, cost

    def map(self, kind: str, value):
        """(value at this scale, None) or (None, the reason it does not run here)."""
        table = getattr(self, kind)
        if value not in table:
            raise ValueError(f"scale {self.name}: {kind} has no entry for {value!r}")
        if table[value] is None:
            return None, self.not_run[(kind, value)]
        return table[value], None


def load_scale(name: str, config_dir: str | Path = CONFIG_DIR) -> Scale:
    path = Path(config_dir) / "scales" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"unknown scale {name!r}; known: {known}")
    data = yaml.safe_load(path.read_text())
    _check_keys(str(path), data, SCALE_KEYS)
    _check_keys(f"{path}: pretrain", data["pretrain"], _free_fields(PretrainSpec))
    _check_keys(f"{path}: finetune", data["finetune"], _free_fields(FinetuneSpec))
    _check_keys(f"{path}: linprobe", data["linprobe"], _free_fields(LinprobeSpec))
    _check_keys(f"{path}: throughput", data["throughput"], {"pretrain", "finetune"})
    not_run = {}
    mappings = {}
    for kind in ("datasets", "models", "patch_sizes", "pretrain_epochs"):
        mappings[kind] = {}
        for paper_value, value in data[kind].items():
            if isinstance(value, dict):
                _check_keys(f"{path}: {kind}.{paper_value}", value, {"not_run"})
                not_run[(kind, paper_value)] = value["not_run"]
                value = None
            mappings[kind][paper_value] = value
    _check_keys(f"{path}: analysis", data["analysis"], ANALYSIS_KEYS)
    cnp_modes = tuple(data.get("cnp_modes", CNP_MODES))
    if not set(cnp_modes) <= set(CNP_MODES):
        raise ValueError(f"{path}: cnp_modes must be a subset of {list(CNP_MODES)}, got {list(cnp_modes)}")
    return Scale(name=name, description=data["description"], **mappings, pretrain=data["pretrain"],
                 finetune=data["finetune"], linprobe=data["linprobe"], throughput=data["throughput"],
                 not_run=not_run, cnp_modes=cnp_modes, analysis=data["analysis"])


def _free_fields(spec_class) -> set[str]:
    """Spec fields a scale may set: all but those the table grid decides."""
    decided = {"dataset", "model", "patch_size", "method", "lam", "mask_ratio", "cnp", "nor_variant", "init"}
    if spec_class is PretrainSpec:
        decided.add("epochs")  # from the scale's pretrain_epochs mapping
    return {f.name for f in dataclasses.fields(spec_class)} - decided


def read_reported(path: str | Path = CONFIG_DIR / "reported.csv") -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
