"""The Snakemake workflow: lint, schema, a paper-scale dry run, and a reduced DAG really run end to end."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from normae.experiments import plan as normae_plan

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")

# A scale smaller than tiny: 128 images, a few seconds a run. T7's longest run is long enough to be
# killed mid-training.
MICRO_SCALE = {
    "description": "test scale: 128 images",
    "pretrain_epochs": {200: 1, 400: 2, 1000: 2, 1600: 40},
    "pretrain": {"train_samples": 128, "batch_size": 64},
    "finetune": {"train_samples": 128, "eval_samples": 100, "batch_size": 64, "warmup_epochs": 0},
    "linprobe": {"train_samples": 128, "eval_samples": 100, "batch_size": 64, "warmup_epochs": 0},
    "analysis": {
        "cnp_similarity": {"fashion_mnist": {"images": 64, "img_size": 28, "patch_size": 4}},
        "pca": {"images": 2},
        "cost": {"model": "vit_micro", "img_size": 28, "patch_size": 4, "batch_size": 8, "steps": 2, "warmup": 1},
    },
}


def micro_workdir(tmp_path: Path) -> Path:
    """A working folder with the repository's config and the micro scale added."""
    workdir = tmp_path / "work"
    shutil.copytree(REPO / "config", workdir / "config")
    scale = yaml.safe_load((REPO / "config" / "scales" / "tiny.yaml").read_text())
    for key, value in MICRO_SCALE.items():
        scale[key] = {**scale[key], **value} if key in ("pretrain", "finetune", "linprobe") else value
    (workdir / "config" / "scales" / "micro.yaml").write_text(yaml.safe_dump(scale))
    return workdir


def snakemake(workdir: Path, *args: str, env=None, check=True, **popen) -> subprocess.CompletedProcess:
    command = [
        SNAKEMAKE,
        "-s",
        str(SNAKEFILE),
        "-d",
        str(workdir),
        "--workflow-profile",
        "none",
        "--cores",
        "2",
        "--rerun-incomplete",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=check, **popen)


@pytest.fixture
def workflow_env(fashion_mnist_root):
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "NORMAE_FASHION_MNIST": str(fashion_mnist_root),
        "OMP_NUM_THREADS": "1",
    }


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> number of jobs."""
    table = output.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def micro_plan(workdir: Path) -> normae_plan.Plan:
    config = workdir / "config"
    return normae_plan.expand(
        normae_plan.load_experiments(config / "experiments.yaml"),
        normae_plan.load_scale("micro", config),
        normae_plan.read_reported(config / "reported.csv"),
    )


def test_lint_is_clean():
    result = subprocess.run(
        [SNAKEMAKE, "--lint", "-s", str(SNAKEFILE), "-d", str(REPO)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


@pytest.mark.slow  # keeps make test-fast under 3 minutes
def test_paper_scale_dry_run_plans_every_run_without_data(tmp_path):
    workdir = tmp_path / "work"
    shutil.copytree(REPO / "config", workdir / "config")
    result = snakemake(
        workdir, "-n", "--config", "scale=paper", env={**os.environ, "NORMAE_FASHION_MNIST": str(tmp_path)}
    )
    counts = job_counts(result.stdout)
    paper = normae_plan.expand(normae_plan.load_experiments(), normae_plan.load_scale("paper"))
    assert counts["train_run"] == len(paper.pretrain) + len(paper.evaluations) + len(paper.measurements)
    assert counts["table"] == len(paper.tables)
    assert not (workdir / "results").exists(), "a dry run wrote results"


@pytest.mark.slow  # keeps make test-fast under 3 minutes
def test_each_seed_adds_a_run_pair(tmp_path):
    workdir = tmp_path / "work"
    shutil.copytree(REPO / "config", workdir / "config")
    one = job_counts(snakemake(workdir, "-n", "results/tables/table6.md").stdout)
    three = job_counts(snakemake(workdir, "-n", "results/tables/table6.md", "--config", "seeds=[0,1,2]").stdout)
    assert three["train_run"] == 3 * one["train_run"] == 3 * 12


def test_the_slurm_profile_sets_resources_of_rules_that_exist():
    """A renamed rule must not silently lose its login-node limit (Snakemake ignores unknown names)."""
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    sources = [SNAKEFILE.read_text(), *(path.read_text() for path in (REPO / "workflow" / "rules").glob("*.smk"))]
    rules = {name for text in sources for name in re.findall(r"^rule (\w+):", text, re.MULTILINE)}
    assert set(profile["set-resources"]) <= rules, set(profile["set-resources"]) - rules


def test_a_table_is_a_target_by_its_name(tmp_path):
    """`snakemake table5` plans exactly Table 5's runs, its table and its sweep figure."""
    workdir = tmp_path / "work"
    shutil.copytree(REPO / "config", workdir / "config")
    counts = job_counts(snakemake(workdir, "-n", "table5").stdout)
    tiny = normae_plan.expand(normae_plan.load_experiments(), normae_plan.load_scale("tiny"))
    table = tiny.tables["T5"]
    assert counts == {
        "train_run": len(table.pretrain_ids() | table.eval_ids()),
        "table": 1,
        "figure_sweep": 1,
        "table5": 1,
        "total": counts["total"],
    }


@pytest.mark.slow  # a paper-scale plan in the Snakefile: about 5 s
def test_the_decisive_experiment_is_a_target_by_its_name(tmp_path):
    """`snakemake evidence --config scale=paper` plans exactly the paper scale's evidence table: its runs
    (the decisive experiment), the table and its two figures; the profile's data map is not needed to plan."""
    workdir = tmp_path / "work"
    shutil.copytree(REPO / "config", workdir / "config")
    counts = job_counts(snakemake(workdir, "-n", "evidence", "--config", "scale=paper").stdout)
    paper = normae_plan.expand(normae_plan.load_experiments(), normae_plan.load_scale("paper"))
    table = paper.tables["evidence"]
    assert counts == {
        "train_run": len(table.pretrain_ids() | table.eval_ids()),
        "table": 1,
        "figure_evidence": 1,
        "figure_pull": 1,
        "evidence": 1,
        "total": counts["total"],
    }
    assert counts["train_run"] == 75  # 12 + 9 pre-trainings, 45 + 9 evaluations (docs/decisive.md)


@pytest.mark.parametrize(
    "override, named", [("scael=tiny", "scael"), ("launcher=cloud", "cloud"), ("seeds=[0,0]", "unique")]
)
def test_schema_rejects_a_wrong_config(tmp_path, override, named):
    workdir = tmp_path / "work"
    shutil.copytree(REPO / "config", workdir / "config")
    result = snakemake(workdir, "-n", "--config", override, check=False)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr


@pytest.mark.slow
def test_reduced_dag_runs_end_to_end_once(tmp_path, workflow_env):
    workdir = micro_workdir(tmp_path)
    targets = ["results/tables/table6.md", "figures/table6_mask_ratio.png", "results/tables/figure3.md"]
    snakemake(workdir, *targets, "--config", "scale=micro", env=workflow_env)

    plan = micro_plan(workdir)
    table = pd.read_csv(workdir / "results/tables/table6.csv")
    planned = plan.tables["T6"].rows
    assert len(table) == len(planned) == 6
    for row, planned_row in zip(table.itertuples(), planned):
        (eval_id,) = planned_row.eval_ids
        summary = json.loads((workdir / "results/runs" / eval_id / "summary.json").read_text())
        assert row.ours == pytest.approx(summary["top1"])
        assert row.paper == planned_row.paper_value and row.scale == "micro"
        assert (workdir / "results/runs" / eval_id / "spec.json").exists()
        assert (workdir / "results/runs" / eval_id / "launch.log").exists()
    assert (workdir / "figures/table6_mask_ratio.png").stat().st_size > 0
    figure3 = pd.read_csv(workdir / "results/tables/figure3.csv")
    stats = json.loads((workdir / "results/analysis/cnp_similarity/fashion_mnist.json").read_text())
    assert figure3.set_index("metric").loc["mean_cosine", "ours"] == pytest.approx(stats["mean"])

    again = snakemake(workdir, *targets, "--config", "scale=micro", env=workflow_env)
    assert "Nothing to be done" in again.stdout + again.stderr

    snakemake(workdir, *targets, "--config", "scale=micro", "--report", str(workdir / "report.html"), env=workflow_env)
    report = (workdir / "report.html").read_text(errors="replace")
    assert "table6_mask_ratio.png" in report and "table6.csv" in report and "table6.html" in report

    # Table 5 shares its lambda-5e-5 ViT-Tiny MAE and NoR-MAE runs with Table 6: only the rest is planned.
    table5 = plan.tables["T5"]
    shared = (table5.pretrain_ids() | table5.eval_ids()) & (
        plan.tables["T6"].pretrain_ids() | plan.tables["T6"].eval_ids()
    )
    assert len(shared) == 4
    dry = snakemake(workdir, "-n", "results/tables/table5.md", "--config", "scale=micro", env=workflow_env)
    new_runs = len(table5.pretrain_ids() | table5.eval_ids()) - len(shared)
    assert job_counts(dry.stdout)["train_run"] == new_runs


@pytest.mark.slow
def test_a_killed_run_is_not_taken_as_finished(tmp_path, workflow_env):
    workdir = micro_workdir(tmp_path)
    plan = micro_plan(workdir)
    (long_run,) = [run_id for run_id, spec in plan.pretrain.items() if spec.epochs == 40 and spec.method == "mae"]
    run_dir = workdir / "results/runs" / long_run
    target = f"results/runs/{long_run}/summary.json"
    command = [
        SNAKEMAKE,
        "-s",
        str(SNAKEFILE),
        "-d",
        str(workdir),
        "--workflow-profile",
        "none",
        "--cores",
        "1",
        target,
        "--config",
        "scale=micro",
    ]
    job = subprocess.Popen(
        command, env=workflow_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    while not (run_dir / "metrics.jsonl").exists():
        assert job.poll() is None and time.time() < deadline, "the run never started"
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not (run_dir / "summary.json").exists()

    dry = snakemake(workdir, "-n", target, "--config", "scale=micro", env=workflow_env)
    assert job_counts(dry.stdout)["train_run"] == 1
    # A killed Snakemake leaves its lock behind: unlock, as the error message tells a user to.
    snakemake(workdir, "--unlock", "--config", "scale=micro", env=workflow_env)
    snakemake(workdir, target, "--config", "scale=micro", env=workflow_env)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 40


@pytest.mark.parametrize("args, reports", [("ARGS=-n", False), ("ARGS=--dry-run", False), ("ARGS=--cores 2", True)])
def test_make_reproduce_with_a_dry_run_stays_a_dry_run(args, reports):
    """`make reproduce ARGS=-n` must not go on to build the report from runs the dry run did not make."""
    recipe = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(REPO), "reproduce", "SCALE=gpu", args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    snakemake_lines = [line for line in recipe.splitlines() if "snakemake" in line and "scale=gpu" in line]
    assert snakemake_lines, recipe
    assert any("--report" in line for line in snakemake_lines) == reports, recipe


@pytest.mark.slow  # trains Table 6's twelve micro runs, then three again
def test_a_deleted_run_folder_is_run_again_with_what_depends_on_it(tmp_path, workflow_env):
    """#22: after deleting run folders, the workflow said "Nothing to be done" and kept tables built from them."""
    workdir = micro_workdir(tmp_path)
    micro = ("--config", "scale=micro")
    snakemake(workdir, "table6", *micro, env=workflow_env)
    table = micro_plan(workdir).tables["T6"]
    evaluation, pretraining = table.rows[0].eval_ids[0], table.rows[1].pretrain_ids[0]
    (dependent,) = [row.eval_ids[0] for row in table.rows if row.pretrain_ids == [pretraining]]
    csv = workdir / "results/tables/table6.csv"
    built = csv.stat().st_mtime_ns
    for run_id in (evaluation, pretraining):
        shutil.rmtree(workdir / "results/runs" / run_id)

    dry = snakemake(workdir, "-n", "table6", *micro, env=workflow_env)
    assert job_counts(dry.stdout) == {"train_run": 3, "table": 1, "figure_sweep": 1, "table6": 1, "total": 6}

    snakemake(workdir, "table6", *micro, env=workflow_env)
    for run_id in (evaluation, pretraining, dependent):
        assert (workdir / "results/runs" / run_id / "summary.json").exists()
    assert csv.stat().st_mtime_ns > built
    again = snakemake(workdir, "-n", "table6", *micro, env=workflow_env)
    assert "Nothing to be done" in again.stdout + again.stderr


def warnings_of(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("[normae] warning: ")]


@pytest.mark.slow  # a paper-scale plan in the Snakefile
def test_the_paper_dry_run_warns_of_empty_slurm_resources_and_unset_data_folders(tmp_path):
    """#22: the paper dry run passed silently with an empty --slurm '{}' and empty data paths."""
    workdir = tmp_path / "work"
    shutil.copytree(REPO / "config", workdir / "config")
    env = {**os.environ, "NORMAE_FASHION_MNIST": str(tmp_path)}
    lines = warnings_of(snakemake(workdir, "-n", "--config", "scale=paper", "launcher=slurm", env=env))
    assert len(lines) == len(set(lines)), lines
    for group in ("pretrain", "finetune", "evaluate", "segmentation"):
        assert sum(f"slurm.{group} is empty" in line for line in lines) == 1, lines
    for key in ("imagenet1k", "cifar10", "ade20k"):
        assert sum(f"data.{key} is not set" in line for line in lines) == 1, lines
    assert not any("data.imagenet100" in line or "fashion_mnist" in line for line in lines), lines


@pytest.mark.slow  # three tiny dry runs
def test_a_filled_slurm_config_starts_without_warnings(tmp_path):
    workdir = tmp_path / "work"
    shutil.copytree(REPO / "config", workdir / "config")
    names = ("pretrain", "finetune", "evaluate", "segmentation")  # the tiny plan has runs of each group
    groups = "{" + ", ".join(f"{name}: {{partition: gpu}}" for name in names) + "}"
    empty = snakemake(workdir, "-n", "table6", "--config", "launcher=slurm")
    assert sorted(line.split(":")[1].split()[0] for line in warnings_of(empty)) == sorted(f"slurm.{n}" for n in names)
    filled = snakemake(workdir, "-n", "table6", "--config", "launcher=slurm", f"slurm={groups}")
    assert warnings_of(filled) == [] and warnings_of(snakemake(workdir, "-n", "table6")) == []
