# The plan (torch-free): config/experiments.yaml at the configured scale and seeds -> unique runs.
import json
import shlex
from pathlib import Path

from normae.experiments import plan as normae_plan
from normae.report.tables import ANALYSIS_DIR

CONFIG_DIR = Path(config["config_dir"])
SEEDS = [int(seed) for seed in config["seeds"]]
PLAN = normae_plan.expand(
    normae_plan.load_experiments(CONFIG_DIR / "experiments.yaml"),
    normae_plan.load_scale(config["scale"], CONFIG_DIR),
    normae_plan.read_reported(CONFIG_DIR / "reported.csv"),
    seeds=SEEDS,
)
RUNS = normae_plan.RUNS_DIR
TABLES = {table.file: table for table in PLAN.tables.values()}
ANALYSIS = PLAN.scale.analysis
PLAN_OPTIONS = f"--scale {config['scale']} --seeds {' '.join(map(str, SEEDS))} --config-dir {CONFIG_DIR}"
SLURM_GROUPS = {"pretrain": "pretrain", "finetune": "finetune", "linprobe": "evaluate"}


wildcard_constraints:
    run="[^/]+",
    table="|".join(TABLES),
    figure="|".join(TABLES),
    sweep="lam|mask_ratio|patch_size|pretrain_epochs",


def run_inputs(wildcards):
    """For an evaluation, the pre-training run it starts from; a pre-training run needs nothing."""
    spec = PLAN.spec(wildcards.run)
    if spec.stage == "pretrain":
        return {}
    return {"pretrain": str(Path(spec.init).parent / "summary.json")}


def launcher_options(wildcards):
    stage = PLAN.spec(wildcards.run).stage
    resources = config.get("slurm", {}).get(SLURM_GROUPS[stage], {})
    options = f"--launcher {config['launcher']}"
    if config["launcher"] != "inprocess":
        options += f" --slurm {shlex.quote(json.dumps(resources))}"
    return options


def summaries(run_ids):
    return [f"{RUNS}/{run_id}/summary.json" for run_id in sorted(run_ids)]


def table_inputs(wildcards):
    """Everything a table reads: its evaluation runs, PCA analyses or measurements."""
    table = TABLES[wildcards.table]
    if table.measure == "cnp_similarity":
        return [f"{ANALYSIS_DIR}/cnp_similarity/{source}.json" for source in ANALYSIS["cnp_similarity"]]
    if table.measure == "cost":
        return [f"{ANALYSIS_DIR}/cost.json"]
    return summaries(table.eval_ids()) + [f"{ANALYSIS_DIR}/pca/{run_id}.json" for run_id in pca_runs(table)]


def pca_runs(table):
    """The pre-training runs a PCA figure shows, once each (scales may map two models to one)."""
    rows = [row for row in table.rows if row.status == "analysis"]
    return list(dict.fromkeys(run_id for row in rows for run_id in row.pretrain_ids))


def pca_labels(table):
    """'<model at this scale> <method> seed <n>' per run of pca_runs."""
    specs = [PLAN.spec(run_id) for run_id in pca_runs(table)]
    return [f"{spec.model} {spec.method} seed {spec.seed}" for spec in specs]


def pca_inputs(wildcards):
    return [f"{ANALYSIS_DIR}/pca/{run_id}.npz" for run_id in pca_runs(TABLES[wildcards.figure])]


FIGURES = [
    *(f"figures/{table.file}_pca.png" for table in PLAN.tables.values() if pca_runs(table)),
    *(f"figures/{table.file}_variants.png" for table in PLAN.tables.values() if table.name == "F6"),
    *(f"figures/{table.file}_{table.sweep}.png" for table in PLAN.tables.values() if table.sweep),
    *(["figures/figure3_cnp_similarity.png"] if ANALYSIS.get("cnp_similarity") else []),
]
