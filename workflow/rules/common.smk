# The plan (torch-free): config/experiments.yaml at the configured scale and seeds -> unique runs.
# Every path comes from normae.paths.ResultsLayout, the same layout the package reads and writes.
import json
import shlex
import sys
from pathlib import Path

from normae.cluster.resources import SLURM_GROUPS
from normae.experiments import plan as normae_plan
from normae.data.registry import folder_key
from normae.experiments.data_map import as_options, folder_for, needed_datasets, normalised, unset_message
from normae.experiments.config import SWEEP_TERMS, rehearsed
from normae.paths import RunFolder, ResultsLayout
from normae.spec import NOR_METHODS

LAYOUT = ResultsLayout()
CONFIG_DIR = Path(config["config_dir"])
SCALE = normae_plan.load_scale(config["scale"], CONFIG_DIR)
REHEARSAL = str(config.get("rehearsal", False)).lower() == "true"  # `make rehearse`: every run cut to a step
if REHEARSAL:
    SCALE = rehearsed(SCALE, CONFIG_DIR)
# config.yaml's seeds, else the scale's, else [0]
SEEDS = [int(seed) for seed in config.get("seeds") or SCALE.seeds or [0]]
# data set -> folder: config.yaml's data map, a profile's and --config data='{...}' merged by Snakemake
DATA = normalised(config.get("data") or {}, "the workflow config's data map")
PLAN = normae_plan.expand(
    normae_plan.load_experiments(CONFIG_DIR / "experiments.yaml"),
    SCALE,
    normae_plan.read_reported(CONFIG_DIR / "reported.csv"),
    seeds=SEEDS,
    data=DATA,
)
TABLES = {table.file: table for table in PLAN.tables.values()}
ANALYSIS = PLAN.scale.analysis
PLAN_OPTIONS = shlex.join(
    ["--scale", config["scale"], "--seeds", *map(str, SEEDS), "--config-dir", str(CONFIG_DIR), *as_options(DATA)]
    + (["--rehearsal"] if REHEARSAL else [])
)


def start_warnings():
    """One line per gap a long run would find late: a stage group's SLURM resources left empty (its jobs get
    the cluster's default partition and time, and no GPU), a data folder the plan reads not set. Printed at
    every start, dry runs included; `make rehearse` leaves the SLURM resources empty on purpose."""
    specs = [*PLAN.pretrain.values(), *PLAN.evaluations.values(), *PLAN.measurements.values()]
    lines = []
    if config["launcher"] == "slurm" and not REHEARSAL:
        for group in dict.fromkeys(SLURM_GROUPS[spec.stage] for spec in specs):
            if not config.get("slurm", {}).get(group):
                lines.append(
                    f"slurm.{group} is empty: its jobs get the cluster's default partition and time limit, and no "
                    f"GPU (fix: set it in workflow/profiles/slurm/cluster.yaml; docs/cluster.md)"
                )
    sets = {}  # data map key -> the planned sets read from its folder
    for name in needed_datasets(PLAN):
        sets.setdefault(folder_key(name), []).append(name)
    for key, names in sets.items():  # fashion_mnist unset is looked up where its loaders look
        if key and key != "fashion_mnist" and not DATA.get(key):
            lines.append(f"data.{key} is not set, and the plan reads {', '.join(names)} (fix: {unset_message(key)})")
    return [f"[normae] warning: {line}" for line in lines]


if workflow.is_main_process:
    for _line in start_warnings():
        print(_line, file=sys.stderr)


wildcard_constraints:
    run="[^/]+",
    table="|".join(TABLES),
    figure="|".join(TABLES),
    sweep="|".join(SWEEP_TERMS),


def cli_options(settings):
    """A scale's analysis settings as quoted command-line options."""
    return shlex.join(f"--{key.replace('_', '-')}={value}" for key, value in settings.items())


def data_root_of(dataset):
    """{"data_root": the data map's folder for ``dataset``}, or {} where none is set (looked up, or not needed)."""
    folder = folder_for(DATA, dataset)
    return {"data_root": folder} if folder else {}


def summary_file(run_id):
    return str(LAYOUT.run(run_id).summary_path)


def run_inputs(wildcards):
    """For an evaluation, the pre-training run it starts from; for a DMAE student, its planned teacher's run;
    other pre-training and bench runs, and evaluations of a randomly initialised encoder, need nothing."""
    spec = PLAN.spec(wildcards.run)
    inputs = {}
    if getattr(spec, "init", "none") != "none":  # "none": a randomly initialised encoder
        inputs["pretrain"] = str(RunFolder(Path(spec.init).parent).summary_path)
    if getattr(spec, "teacher", None) and Path(spec.teacher).name == RunFolder.CHECKPOINT:  # a planned teacher
        inputs["teacher"] = str(RunFolder(Path(spec.teacher).parent).summary_path)
    return inputs


def launcher_options(wildcards, threads):
    """A run in the Snakemake job takes the rule's threads; a SLURM or local job sizes torch's threads from
    what the job itself was given (its cpus_per_task), not from the rule."""
    stage = PLAN.spec(wildcards.run).stage
    options = ["--launcher", config["launcher"]]
    if config["launcher"] == "inprocess":
        options += ["--threads", str(threads)]
    else:
        options += ["--slurm", json.dumps(config.get("slurm", {}).get(SLURM_GROUPS[stage], {}))]
    return shlex.join(options)


def summaries(run_ids):
    return [summary_file(run_id) for run_id in sorted(run_ids)]


def run_summaries(table=None):
    """Every planned run's summary.json (or one table's runs'), for the target rules (all, one per table).

    Snakemake re-creates a missing file only for a job that must run anyway, so a deleted run folder between
    up-to-date tables went unnoticed ("Nothing to be done"). As a target rule's input, a missing summary.json
    is re-made: its run re-runs, and so does every job that reads it (evaluations, tables, figures).
    """
    if table is None:
        return summaries([*PLAN.pretrain, *PLAN.evaluations, *PLAN.measurements])
    return summaries(table.pretrain_ids() | table.eval_ids())


def table_inputs(wildcards):
    """Everything a table reads: its evaluation runs, PCA analyses or measurements."""
    table = TABLES[wildcards.table]
    if table.measure == "cnp_similarity":
        return [str(LAYOUT.cnp_similarity(source)) for source in ANALYSIS["cnp_similarity"]]
    if table.measure == "cost":  # the bench run (a GPU job at the paper scale)
        return summaries(table.eval_ids())
    return summaries(table.eval_ids()) + [str(LAYOUT.pca(run_id)) for run_id in pca_runs(table)]


def pca_runs(table):
    """The pre-training runs a PCA figure shows, once each (scales may map two models to one)."""
    rows = [row for row in table.rows if row.status == "analysis"]
    return list(dict.fromkeys(run_id for row in rows for run_id in row.pretrain_ids))


def pca_inputs(wildcards):
    return [str(LAYOUT.pca(run_id, "npz")) for run_id in pca_runs(TABLES[wildcards.figure])]


def nor_pretrain_ids(table):
    """The NoR-MAE pre-training runs of ``table`` (what its pull figure draws)."""
    return sorted(i for i in table.pretrain_ids() if PLAN.pretrain[i].method in NOR_METHODS)


# The pull figures: the NoR term's share of the gradient over training, for the evidence tables' NoR-MAE runs
# (a table this scale does not run, e.g. evidence_long at the paper scale, has none and no figure).
PULL_TABLES = [name for name in ("evidence", "evidence_long") if name in TABLES and nor_pretrain_ids(TABLES[name])]
# Each table's figures (a table's target builds them), by the table's file name, in the order drawn.
_FIGURE_STEMS = [
    *((table.file, f"{table.file}_pca") for table in PLAN.tables.values() if pca_runs(table)),
    *((table.file, f"{table.file}_variants") for table in PLAN.tables.values() if table.name == "F6"),
    *((table.file, f"{table.file}_{table.sweep}") for table in PLAN.tables.values() if table.sweep),
    *([("figure3", "figure3_cnp_similarity")] if ANALYSIS.get("cnp_similarity") else []),
    *([("evidence", "evidence_lambda")] if "evidence" in TABLES else []),
    *((name, f"{name}_pull") for name in PULL_TABLES),
]
FIGURES_OF = {}
for _file, _stem in _FIGURE_STEMS:
    FIGURES_OF.setdefault(_file, []).append(str(LAYOUT.figure(_stem)))
FIGURES = [figure for figures in FIGURES_OF.values() for figure in figures]
# The pull figures' right panel: a paper-geometry run and its stand-in on one schedule, measured once on this
# CPU (the command: docs/measurements.md, "The pull over training").
PULL_REFERENCE = CONFIG_DIR / "nor_share_training.csv"


def pull_runs(wildcards):
    """The summaries of the NoR-MAE pre-training runs of one evidence table."""
    return summaries(nor_pretrain_ids(TABLES[wildcards.table]))


def paper_order(name, label, suffix=None):
    """The report label ``{label: "NN <name>[_<suffix>]"}`` that lists table ``name``'s page (or figure) in
    the paper's order, which is the plan's: Table 1 to 7, then the others. The report sorts a category's
    items by their labels' text, hence the number; one label only, as a second one with two values is taken
    for a toggle."""
    shown = f"{name}_{suffix}" if suffix else name
    return {label: f"{list(TABLES).index(name) + 1:02d} {shown}"}
