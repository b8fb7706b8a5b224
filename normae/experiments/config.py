"""What the configuration says: the paper's tables as grids (config/experiments.yaml), a scale's
mapping of the paper's settings (config/scales/<name>.yaml) and the paper's numbers
(config/reported.csv), each read and checked against its JSON schema (workflow/schemas/), with
the file and the path of a bad entry named. No torch import."""

from __future__ import annotations

import csv
import dataclasses
import functools
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from normae.errors import ConfigError
from normae.spec import CNP_MODES, NOR_METHODS, FinetuneSpec, KnnSpec, LinprobeSpec, PretrainSpec, SegmentSpec
from normae.spec import METHODS as SPEC_METHODS

# The settings a table's `sweep:` may name: its figure plots the metric against this term.
SWEEP_TERMS = ("lam", "mask_ratio", "patch_size", "pretrain_epochs")

# The checkout this module sits in (normae/experiments/config.py): config/ and workflow/schemas/ are beside normae/.
REPO_DIR = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_DIR / "config"
SCHEMA_DIR = REPO_DIR / "workflow" / "schemas"

PRETRAIN_TERMS = ("model", "dataset", "method", "epochs", "patch_size", "mask_ratio", "lam", "cnp", "nor_variant")
REQUIRED_PRETRAIN_TERMS = ("model", "dataset", "method", "epochs", "patch_size", "mask_ratio")
NOR_LOSS_TERMS = ("lam", "cnp", "nor_variant")
# A grid's method for "no pre-training": the encoder as initialised, evaluated as the floor that
# pre-training must clear (its rows have evaluation runs with ``init: none`` and no pre-training run).
NO_PRETRAINING = "random_init"
# The paper's methods, including those the spec cannot run yet (NOT_IMPLEMENTED below), and no pre-training.
METHODS = (*SPEC_METHODS, NO_PRETRAINING)
METHODS_WITHOUT_NOR_LOSS = tuple(method for method in METHODS if method not in NOR_METHODS)
# A grid (table or variant) key that is not a pre-training term: run only the first N of the plan's seeds.
SEED_COUNT = "seed_count"
# A variant key that is not a pre-training term: its own evaluation(s) instead of the table's.
GRID_EVALUATE = "evaluate"
PROTOCOLS = ("finetune", "linprobe", "knn", "pca", "segmentation")
PAPER_IMG_SIZE = 224
# The authors' public code hard-wires its neighbour table to 196 tokens (REFERENCE-FACTS.md): a 14 x 14
# grid, 224 px at patch 16. Their CNP on another grid is our extrapolation of it, not their code's number.
AUTHORS_CODE_GRID = 14
PAPER_FINETUNE_EPOCHS = 100
PAPER_SEGMENTATION_EPOCHS = 100  # MAE's ADE20K protocol (its paper, A.4)

# protocol -> the spec of its evaluation runs; a scale holds a block of settings for each (its `knn:` etc.).
EVAL_SPECS = {"finetune": FinetuneSpec, "linprobe": LinprobeSpec, "knn": KnnSpec, "segmentation": SegmentSpec}
ANALYSES = {"pca": "PCA of visible vs CNP features of the pre-trained encoder (analysis stage)"}
MEASUREMENTS = {"cnp_similarity": "normae cnp-stats", "cost": "normae bench"}
NOT_IMPLEMENTED: dict[str, str] = {}  # method or protocol -> why its rows cannot run yet (none left)


# ---------------------------------------------------------------- schemas

# What PyYAML (YAML 1.1) takes for a string though it reads as a number: an exponent without a dot (5e-5).
_YAML_STRING_FLOAT = re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$")


@functools.cache
def _validator(schema_name: str):
    # jsonschema is imported here, not at the top: every normae command imports this module, few read the config.
    import jsonschema

    path = SCHEMA_DIR / schema_name
    if not path.exists():
        raise ConfigError(
            f"schema {path} not found: normae reads config/ and workflow/schemas/ from its source checkout"
        )
    schema = yaml.safe_load(path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _shown(path: Path) -> str:
    """The path relative to the working directory where it lies below it, as given otherwise."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _load_checked(path: str | Path, schema_name: str) -> dict:
    """A YAML file's data, or a ConfigError naming the file, the path of the bad entry and what is wrong."""
    from jsonschema.exceptions import best_match

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{_shown(path)}: not valid YAML: {error}") from None
    validator = _validator(schema_name)
    problem = best_match(validator.iter_errors(data))
    if problem is None:
        return data
    where = [str(part) for part in problem.absolute_path]
    message = problem.message
    if problem.validator == "additionalProperties":  # name the unexpected key in the path, and what is allowed
        allowed = sorted(problem.schema.get("properties", {}), key=str)
        unexpected = [key for key in problem.instance if key not in allowed]
        if len(unexpected) == 1:
            where.append(str(unexpected[0]))
        if allowed:
            message += f"; allowed: {', '.join(map(str, allowed))}"
    elif "propertyNames" in problem.relative_schema_path and problem.validator == "enum":  # a key outside a fixed set
        where.append(str(problem.instance))
        message = f"{problem.instance!r} is not allowed here; allowed: {', '.join(map(str, problem.validator_value))}"
        if "description" in problem.schema:
            message += f"; {problem.schema['description']}"
    elif (
        problem.validator == "type" and isinstance(problem.instance, str) and _YAML_STRING_FLOAT.match(problem.instance)
    ):
        message += f" (YAML 1.1 reads {problem.instance} as a string: write it with a dot, e.g. 5.0e-5)"
    raise ConfigError(f"{_shown(path)}: {'.'.join(where) or '(top level)'}: {message}")


def load_workflow_config(path: str | Path) -> dict:
    """config/config.yaml, checked against the workflow's config schema."""
    return _load_checked(path, "config.schema.yaml")


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- experiments.yaml


def load_experiments(path: str | Path = CONFIG_DIR / "experiments.yaml") -> dict:
    """The tables of experiments.yaml, each normalised to a list of grids and a list of evaluations."""
    data = _load_checked(path, "experiments.schema.yaml")
    base = data.get("defaults", {}).get("pretrain", {})
    tables = {}
    for name, table in data["tables"].items():
        if "measure" in table:
            tables[name] = {
                "file": table["file"],
                "title": table["title"],
                "measure": table["measure"],
                "grids": [],
                "evaluate": [],
            }
            continue
        grid = {**base, **table.get("pretrain", {})}
        variants = table.get("variants", [])
        grids = [{**grid, **variant} for variant in variants] or [grid]
        for index, point in enumerate(grids):
            missing = [term for term in REQUIRED_PRETRAIN_TERMS if term not in point]
            if missing:
                where = f"tables.{name}" + (f".variants.{index}" if variants else "")
                sources = (
                    "none of defaults.pretrain, the table's pretrain and this variant"
                    if variants
                    else "neither defaults.pretrain nor the table's pretrain"
                )
                raise ConfigError(
                    f"{_shown(Path(path))}: {where}: no value for the pretrain term(s) "
                    f"{', '.join(missing)} (set in {sources})"
                )
        tables[name] = {
            "file": table["file"],
            "sweep": table.get("sweep"),
            "title": table["title"],
            "measure": None,
            "grids": grids,
            "evaluate": as_list(table["evaluate"]),
            "cnp_modes": table.get("cnp_modes", ["paper"]),
        }
    return tables


def grid_points(grid: dict, cnp_modes: list[str]) -> list[dict]:
    """The cartesian product of a grid, NoR-loss terms dropped where there is no NoR loss, duplicates removed.

    Each NoR-MAE point is repeated for every CNP mode unless the grid names the mode itself.
    """
    keys = [key for key in grid if key not in (SEED_COUNT, GRID_EVALUATE)]
    points = []
    for values in itertools.product(*(as_list(grid[k]) for k in keys)):
        point = dict(zip(keys, values))
        if point["method"] in METHODS_WITHOUT_NOR_LOSS:
            point = {k: v for k, v in point.items() if k not in NOR_LOSS_TERMS}
        elif point["method"] in NOR_METHODS:
            point.setdefault("nor_variant", "offdiag")
        if point["method"] in NOR_METHODS and "cnp" not in point:
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
    knn: dict  # KnnSpec settings (weighted k-NN, one pass, nothing trained)
    segmentation: dict  # SegmentSpec settings (UperNet on the encoder)
    throughput: dict
    not_run: dict = field(default_factory=dict)  # (kind, paper value) -> reason
    cnp_modes: tuple = CNP_MODES  # the CNP modes a table's cnp_modes may double NoR-MAE rows into here
    analysis: dict = field(default_factory=dict)  # settings of the measurements: cnp_similarity, pca, cost
    # '<paper model>/<paper patch>' -> factor on the paper's lambda (normae.experiments.faithful); None: the paper's
    lam_scale: dict | None = None
    tables: tuple | None = None  # the experiments.yaml tables this scale runs (None: all)
    # experiments.yaml table -> {seeds, protocols, header}: how this scale runs that table (scale.schema.yaml)
    per_table: dict = field(default_factory=dict)
    seeds: tuple | None = None  # the seeds a run of this scale uses where the config names none
    header: str | None = None  # a line every table of this scale carries (what its numbers can and cannot say)
    # DMAE's teacher: {model, pretrain: true} (the plan pre-trains it: MAE, the student's data, patch and
    # epochs) or {model, checkpoint: <{'model': ...} file>}; None: distilled rows are not run here
    teacher: dict | None = None
    # the rehearsal: each pre-training run's forward pass cut to the fewest images its method trains on
    # (PretrainSpec.pass_minimum: 2 for SupMAE's BatchNorm head, 1 for the others); its global batch stays
    smallest_pass: bool = False

    def map(self, kind: str, value):
        """(value at this scale, None) or (None, the reason it does not run here)."""
        table = getattr(self, kind)
        if value not in table:
            raise ConfigError(f"scale {self.name}: {kind} has no entry for {value!r}")
        if table[value] is None:
            return None, self.not_run[(kind, value)]
        return table[value], None


def load_scale(name: str, config_dir: str | Path = CONFIG_DIR) -> Scale:
    path = Path(config_dir) / "scales" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"unknown scale {name!r}; known: {known}")
    data = _load_checked(path, "scale.schema.yaml")
    not_run: dict[tuple[str, object], str] = {}
    mappings: dict[str, dict] = {}
    for kind in ("datasets", "models", "patch_sizes", "pretrain_epochs"):
        mappings[kind] = {}
        for paper_value, value in data[kind].items():
            if isinstance(value, dict):
                not_run[(kind, paper_value)] = value["not_run"]
                value = None
            mappings[kind][paper_value] = value
    return Scale(
        name=name,
        description=data["description"],
        datasets=mappings["datasets"],
        models=mappings["models"],
        patch_sizes=mappings["patch_sizes"],
        pretrain_epochs=mappings["pretrain_epochs"],
        pretrain=data["pretrain"],
        finetune=data["finetune"],
        linprobe=data["linprobe"],
        knn=data["knn"],
        segmentation=data["segmentation"],
        throughput=data["throughput"],
        not_run=not_run,
        cnp_modes=tuple(data.get("cnp_modes", CNP_MODES)),
        analysis=data["analysis"],
        lam_scale=data.get("lam_scale"),
        tables=tuple(data["tables"]) if "tables" in data else None,
        per_table=data.get("per_table", {}),
        seeds=tuple(data["seeds"]) if "seeds" in data else None,
        header=data.get("header"),
        teacher=data.get("teacher"),
    )


REHEARSAL_FILE = "rehearsal.yaml"


def rehearsed(scale: Scale, config_dir: str | Path = CONFIG_DIR) -> Scale:
    """The scale with config/rehearsal.yaml laid over its blocks: every run cut to a step on a few
    images, at the scale's models, sizes and batches; every table's header says REHEARSAL."""
    path = Path(config_dir) / REHEARSAL_FILE
    if not path.exists():
        raise ConfigError(f"{_shown(path)} not found: the rehearsal's settings live there")
    cut = _load_checked(path, "rehearsal.schema.yaml")
    analysis = dict(scale.analysis)
    for name, settings in cut["analysis"].items():
        if name == "cnp_similarity":  # one block per image source
            analysis[name] = {source: {**options, **settings} for source, options in analysis[name].items()}
        else:
            analysis[name] = {**analysis[name], **settings}
    header = cut["header"] + (f"; {scale.header}" if scale.header else "")
    pretrain = dict(cut["pretrain"])
    epochs = pretrain.pop("epochs", None)  # a pre-training run's epochs come from the scale's mapping
    mapped_epochs = {
        paper: (epochs if ours is not None and epochs else ours) for paper, ours in scale.pretrain_epochs.items()
    }
    return dataclasses.replace(
        scale,
        description=f"{scale.description} (REHEARSAL)",
        pretrain={**scale.pretrain, **pretrain},
        pretrain_epochs=mapped_epochs,
        finetune={**scale.finetune, **cut["finetune"]},
        linprobe={**scale.linprobe, **cut["linprobe"]},
        knn={**scale.knn, **cut["knn"]},
        segmentation={**scale.segmentation, **cut["segmentation"]},
        analysis=analysis,
        header=header,
        smallest_pass=cut["smallest_pass"],
        teacher=cut.get("teacher", scale.teacher),
    )


def scale_spec_fields(spec_class) -> set[str]:
    """Spec fields a scale may set (its pretrain, finetune, linprobe, knn, segmentation blocks): all but those
    the table grid or the plan decides. workflow/schemas/scale.schema.yaml lists them; tests/test_plan.py
    checks it does."""
    decided = {
        "dataset",
        "data_root",
        "model",
        "patch_size",
        "method",
        "lam",
        "mask_ratio",
        "cnp",
        "nor_variant",
        "init",
        "seed",
    }
    if spec_class is PretrainSpec:
        decided |= {"epochs", "teacher", "teacher_model"}  # the pretrain_epochs mapping; the scale's teacher block
    return {f.name for f in dataclasses.fields(spec_class)} - decided


def read_reported(path: str | Path = CONFIG_DIR / "reported.csv") -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
