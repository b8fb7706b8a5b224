"""normae launch --launcher slurm against a real SLURM (``.ci/start-slurm`` starts one on this machine).

Without a cluster these tests skip, unless NORMAE_REQUIRE_SLURM=1 (set by .ci/run): then they fail.
SLURM delays a requeued job's start by about two minutes (its BeginTime); the tests move the start
to now with ``scontrol update``, since what they check is what the job does when it runs again.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import torch

from normae.training.checkpoint import load_checkpoint

from helpers import assert_same_run, finish, start_launcher, tiny_spec, wait_for_file, write_spec

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def slurm_problem() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client here (sinfo / sbatch missing)"
    answer = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=30)
    if answer.returncode != 0:
        return f"sinfo failed: {answer.stderr.strip()}"
    if not any(state.startswith(("idle", "mixed", "allocated")) for state in answer.stdout.split()):
        return f"no SLURM node is up (sinfo: {answer.stdout.split()})"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    problem = slurm_problem()
    if problem and os.environ.get("NORMAE_REQUIRE_SLURM") == "1":
        pytest.fail(f"NORMAE_REQUIRE_SLURM=1 but {problem}")
    if problem:
        pytest.skip(f"{problem}; `.ci/start-slurm` (as root) starts a single-node cluster")


def unique_run(tmp_path, prefix: str):
    """A run folder whose name (and so its job name) no earlier test session used."""
    return tmp_path / f"{prefix}-{uuid.uuid4().hex[:8]}"


def job_state(job_id: str) -> str:
    return subprocess.run(
        ["squeue", "--noheader", "--states=all", "--jobs", job_id, "--format=%T"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()


def jobs_named(name: str, submitted_from=None) -> list[str]:
    """Every job SLURM still knows (pending, running, or ended within MinJobAge) with this name
    (and, if given, submitted from this folder)."""
    listing = subprocess.run(
        ["squeue", "--me", "--noheader", "--states=all", f"--name={name}", "--format=%i|%Z"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    jobs = [line.split("|", 1) for line in listing.split()]
    return [job_id for job_id, folder in jobs if submitted_from is None or Path(folder) == Path(submitted_from)]


def start_requeued_job_now(job_id: str, timeout=60.0) -> None:
    """Once the requeued job pends, let it start at once instead of after SLURM's requeue delay.

    SLURM may set the requeued job's begin time after our ``StartTime=now`` landed (seen on this
    machine: the job then pended past the test's wait), so the update is repeated until it runs."""
    deadline = time.monotonic() + timeout
    while job_state(job_id) != "PENDING":
        assert time.monotonic() < deadline, f"job {job_id} did not go back to PENDING (state {job_state(job_id)})"
        time.sleep(0.3)
    while job_state(job_id) == "PENDING":
        assert time.monotonic() < deadline, f"requeued job {job_id} still pending after {timeout:.0f} s"
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=30)
        time.sleep(2.0)


def step_lines(text: str) -> int:
    return sum(json.loads(line)["kind"] == "step" for line in text.splitlines() if line.strip())


def wait_for_steps(run, steps: int, timeout=300.0, job_id: str | None = None) -> None:
    """Until the run's metrics hold ``steps`` step lines (generous: a loaded CI machine starts jobs slowly).

    With ``job_id`` (a requeued job), a job found pending again is told to start now each time: SLURM has
    been seen to reset a requeued job's begin time after ``start_requeued_job_now`` saw it leave PENDING."""

    def reached(text: str) -> bool:
        if job_id is not None and job_state(job_id) == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], timeout=30)
        return step_lines(text) >= steps

    wait_for_file(run / "metrics.jsonl", timeout, reached)


def job_id_of(run) -> str:
    return json.loads(wait_for_file(run / "job.json"))["job_id"]


def test_pretrain_through_slurm(tmp_path):
    spec_path = write_spec(tmp_path, tiny_spec(method="nor_mae", train_samples=256))
    run = unique_run(tmp_path, "pretrain")
    status, report, output = finish(start_launcher(spec_path, run, "slurm", {"timeout_min": 10, "cpus_per_task": 1}))
    assert status == 0, output
    assert report["heavy"] == [] and report["max_rss_mb"] < 100, report
    job_id = json.loads((run / "job.json").read_text())["job_id"]
    assert jobs_named(f"normae-{run.name}") == [job_id]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["optimizer_steps"] == 16 and summary["spec"]["method"] == "nor_mae"
    sbatch = (run / "slurm" / f"{job_id}_submission.sh").read_text()
    assert "#SBATCH --requeue" in sbatch and "#SBATCH --signal=USR2@120" in sbatch and "#SBATCH --time=10" in sbatch
    assert '"loss_rec"' in output and f"submitted slurm job {job_id}" in output


def test_requeued_mid_run_resumes_and_equals_an_uninterrupted_run(tmp_path):
    """Two interruptions: USR2 (time limit near: the job checkpoints and requeues itself), then
    ``scontrol requeue`` (SIGTERM: checkpoint, SLURM requeues). The result equals a straight run."""
    spec = tiny_spec(train_samples=512, epochs=4, warmup_epochs=1)  # 64 steps
    spec_path = write_spec(tmp_path, spec)
    run = unique_run(tmp_path, "requeue")
    launcher = start_launcher(spec_path, run, "slurm", {"timeout_min": 10, "cpus_per_task": 1})
    reference = subprocess.Popen(  # the uninterrupted run, meanwhile, on the other core
        ["normae", "launch", "--spec", str(spec_path), "--out", str(tmp_path / "straight")],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    job_id = job_id_of(run)

    wait_for_steps(run, 6)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    start_requeued_job_now(job_id)
    first_stop = load_checkpoint(run / "checkpoint.pt")["loop"]["optimizer_steps"]
    assert 6 <= first_stop < 64

    wait_for_steps(run, first_stop + 8, job_id=job_id)
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
    start_requeued_job_now(job_id)

    status, report, output = finish(launcher)
    assert status == 0, output
    assert reference.wait(timeout=120) == 0
    assert_same_run(tmp_path / "straight", run)
    log = (run / "slurm" / f"{job_id}_0_log.err").read_text()
    assert log.count("resumed from") == 2, log
    assert "checkpoint written (SIGUSR2)" in log and "checkpoint written (SIGTERM)" in log
    assert json.loads((run / "job.json").read_text())["submissions"] == [job_id]
    assert report["heavy"] == [] and report["max_rss_mb"] < 100, report


def test_a_job_with_dataloader_workers_requeued_mid_run_equals_an_uninterrupted_run(tmp_path):
    """``scontrol requeue`` sends SIGTERM to every process of the job, the two DataLoader workers
    included (issue 11, fault 2). The workers ignore it, the main process checkpoints, and the
    requeued job resumes to the same weights and metrics as a run never interrupted."""
    spec = tiny_spec(train_samples=512, epochs=4, warmup_epochs=1, num_workers=2)  # 64 steps
    spec_path = write_spec(tmp_path, spec)
    run = unique_run(tmp_path, "workers")
    launcher = start_launcher(spec_path, run, "slurm", {"timeout_min": 10, "cpus_per_task": 1})
    job_id = job_id_of(run)
    wait_for_steps(run, 6)
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
    start_requeued_job_now(job_id)
    stopped_at = load_checkpoint(run / "checkpoint.pt")["loop"]["optimizer_steps"]
    assert 6 <= stopped_at < 64
    reference = subprocess.run(  # the uninterrupted run, with the same workers and threads, while the job goes on
        ["normae", "launch", "--spec", str(spec_path), "--out", str(tmp_path / "straight"), "--threads", "1"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert reference.returncode == 0, reference.stderr

    status, report, output = finish(launcher, timeout=600)
    assert status == 0, output
    assert_same_run(tmp_path / "straight", run)
    log = (run / "slurm" / f"{job_id}_0_log.err").read_text()
    assert "checkpoint written (SIGTERM)" in log and log.count("resumed from") == 1, log
    assert "killed by signal" not in log, log
    assert json.loads((run / "job.json").read_text())["submissions"] == [job_id]
    assert report["heavy"] == [], report


def test_two_tasks_with_gloo_equal_one_process_with_the_same_global_batch(tmp_path):
    one = write_spec(tmp_path, tiny_spec(batch_size=32), "one.json")
    two = write_spec(tmp_path, tiny_spec(batch_size=16), "two.json")
    run = unique_run(tmp_path, "ddp")
    launcher = start_launcher(
        two, run, "slurm", {"timeout_min": 10, "tasks_per_node": 2, "cpus_per_task": 1, "mem_gb": 4}
    )
    single = subprocess.run(
        ["normae", "launch", "--spec", str(one), "--out", str(tmp_path / "single")],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    status, _, output = finish(launcher)
    assert status == 0, output

    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["effective_batch"] == 32
    a = load_checkpoint(tmp_path / "single" / "checkpoint.pt")["model"]
    b = load_checkpoint(run / "checkpoint.pt")["model"]
    for key in a:
        if key.endswith("attn.qkv.bias"):
            # The key bias shifts every logit of a query alike, so softmax ignores it: its gradient is
            # zero but for float noise, which Adam scales up to steps of about lr. Bound it by that.
            (qa, ka, va), (qb, kb, vb) = a[key].chunk(3), b[key].chunk(3)
            torch.testing.assert_close(torch.cat([qa, va]), torch.cat([qb, vb]), rtol=1e-4, atol=1e-5, msg=key)
            torch.testing.assert_close(ka, kb, rtol=0, atol=summary["lr"] * summary["optimizer_steps"], msg=key)
        else:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    losses = [
        [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
        for folder in (tmp_path / "single", run)
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    job_id = json.loads((run / "job.json").read_text())["job_id"]
    assert (run / "slurm" / f"{job_id}_1_log.err").exists()  # the second task's own log


def test_launching_twice_while_pending_then_running_submits_once(tmp_path):
    spec_path = write_spec(tmp_path, tiny_spec())
    run = unique_run(tmp_path, "twice")
    held = {"timeout_min": 10, "cpus_per_task": 1, "additional_parameters": {"hold": True}}
    first = start_launcher(spec_path, run, "slurm", held)
    job_id = job_id_of(run)
    assert job_state(job_id) == "PENDING"
    second = start_launcher(spec_path, run, "slurm", held)
    time.sleep(3)  # the second launcher has looked at job.json and the queue by now
    subprocess.run(["scontrol", "release", job_id], check=True, timeout=30)
    wait_for_steps(run, 1)
    third = start_launcher(spec_path, run, "slurm", held)  # while it runs

    results = [finish(process) for process in (first, second, third)]
    for status, report, output in results:
        assert status == 0, output
        assert report["heavy"] == [], report
    assert f"re-attached to slurm job {job_id}" in results[1][2]
    assert f"re-attached to slurm job {job_id}" in results[2][2] or "already finished" in results[2][2]
    status, _, output = finish(start_launcher(spec_path, run, "slurm", held))  # after it finished
    assert status == 0 and "already finished" in output
    assert json.loads((run / "job.json").read_text())["submissions"] == [job_id]
    assert jobs_named(f"normae-{run.name}") == [job_id]
    assert len(list((run / "slurm").glob("*_submission.sh"))) == 1


def test_requeue_limit_and_cancelled_job_fail_clearly(tmp_path):
    spec_path = write_spec(tmp_path, tiny_spec(train_samples=512, epochs=4))
    limited = unique_run(tmp_path, "limit")
    cancelled = unique_run(tmp_path, "cancel")
    resources = {"timeout_min": 10, "cpus_per_task": 1}
    launchers = [
        start_launcher(spec_path, limited, "slurm", {**resources, "max_requeues": 0}),
        start_launcher(spec_path, cancelled, "slurm", resources),
    ]
    limited_id, cancelled_id = job_id_of(limited), job_id_of(cancelled)
    wait_for_steps(limited, 3)
    subprocess.run(["scancel", "--signal=USR2", limited_id], check=True, timeout=30)
    wait_for_steps(cancelled, 3)
    subprocess.run(["scancel", cancelled_id], check=True, timeout=30)  # SIGTERM, and no requeue

    (status_limit, _, output_limit), (status_cancel, _, output_cancel) = (finish(p, timeout=180) for p in launchers)
    assert status_limit == 1 and "max_requeues=0" in output_limit, output_limit
    assert f"{limited / 'slurm' / limited_id}_0_log.err" in output_limit
    assert status_cancel == 1 and f"{cancelled / 'slurm' / cancelled_id}_0_log.err" in output_cancel, output_cancel
    for run in (limited, cancelled):
        assert (run / "checkpoint.pt").exists() and not (run / "summary.json").exists()


# ---- the workflow through the SLURM profile ----------------------------------------------------------
def workflow_folder(tmp_path):
    """A working directory for Snakemake with the repository's workflow, config and data, and its own results/."""
    repo = Path(__file__).resolve().parents[1]
    folder = tmp_path / "work"
    folder.mkdir()
    for name in ("workflow", "config", "data", "slurm"):  # slurm: the root's link to workflow/profiles/slurm
        (folder / name).symlink_to(repo / name)
    return folder


def snakemake_command(*arguments) -> list[str]:
    """The documented command (docs/cluster.md), `snakemake --profile slurm`, as typed at the repository's root."""
    return ["snakemake", "--profile", "slurm", *arguments, "--config", "scale=tiny"]


def reduced_targets(folder) -> list[str]:
    """A reduced tiny-scale DAG: Table 3's two vit_micro fine-tuning runs, each after its pre-training run.

    (All of Table 3, 8 runs, took 144 s on this 2-core machine under load: over a test's budget.)
    """
    dry_run = subprocess.run(
        # the shell commands: the profiles echo none, and the live display (the workflow profile's) lists no jobs
        snakemake_command("--dry-run", "--printshellcmds", "--workflow-profile", "none", "results/tables/table3.md"),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dry_run.returncode == 0, dry_run.stdout + dry_run.stderr
    finetune_runs = r"normae launch --spec \S+ --out (results/runs/\S*-finetune-\S*vit_micro\S*)"
    outs = set(re.findall(finetune_runs, dry_run.stdout))
    assert len(outs) == 2, dry_run.stdout
    return sorted(f"{out}/summary.json" for out in outs)


def start_snakemake(folder, targets) -> subprocess.Popen:
    return subprocess.Popen(
        snakemake_command(*targets),
        cwd=folder,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def assert_each_run_submitted_once(folder) -> list:
    runs = sorted((folder / "results" / "runs").iterdir())
    for run in runs:
        record = json.loads((run / "job.json").read_text())
        assert record["launcher"] == "slurm" and record["submissions"] == [record["job_id"]], run
        assert jobs_named(f"normae-{run.name}", submitted_from=folder) == [record["job_id"]], run
        assert len(list((run / "slurm").glob("*_submission.sh"))) == 1, run
        assert (run / "summary.json").exists(), run
    return runs


def test_workflow_runs_every_training_job_through_sbatch(tmp_path):
    """... with torch's threads in each job what the job was given: cpus_per_task 2 for pre-training, and
    for the fine-tuning jobs (no cpus_per_task) the OMP_NUM_THREADS=1 that Snakemake's environment passes."""
    folder = workflow_folder(tmp_path)
    cluster = folder / "cluster.yaml"  # in place of the profile's (YAML: --config would pass "2" as a string)
    cluster.write_text("launcher: slurm\nslurm: {pretrain: {cpus_per_task: 2}, finetune: {}, evaluate: {}}\n")
    snakemake = start_snakemake(folder, [*reduced_targets(folder), "--configfile", str(cluster)])
    output, _ = snakemake.communicate(timeout=600)
    assert snakemake.returncode == 0, output
    runs = assert_each_run_submitted_once(folder)
    assert len(runs) == 4 and sum(run.name.startswith("fmnist-") for run in runs) == 2
    for run in runs:
        pretraining = run.name.startswith("fmnist-")
        assert json.loads((run / "summary.json").read_text())["torch_threads"] == (2 if pretraining else 1), run.name


def test_killing_snakemake_while_jobs_run_then_restarting_submits_nothing_twice(tmp_path):
    folder = workflow_folder(tmp_path)
    targets = reduced_targets(folder)
    snakemake = start_snakemake(folder, targets)
    runs = folder / "results" / "runs"
    deadline = time.monotonic() + 120
    while len(list(runs.glob("*/job.json"))) < 2:  # both pre-training jobs submitted
        assert time.monotonic() < deadline, "Snakemake submitted no jobs within 120 s"
        time.sleep(0.5)
    os.killpg(snakemake.pid, signal.SIGHUP)  # the login session is gone: Snakemake and its launchers with it
    snakemake.communicate(timeout=60)
    # a job may end between its submission and the kill; Snakemake then took its summary as finished
    ended_before_kill = len(list(runs.glob("*/summary.json")))
    submitted = [json.loads(path.read_text())["job_id"] for path in runs.glob("*/job.json")]
    assert any(job_state(job_id) in ("PENDING", "RUNNING") for job_id in submitted), "no SLURM job outlived Snakemake"

    subprocess.run(snakemake_command("--unlock", *targets), cwd=folder, check=True, capture_output=True, timeout=300)
    restarted = start_snakemake(folder, targets)
    output, _ = restarted.communicate(timeout=600)
    assert restarted.returncode == 0, output
    assert len(assert_each_run_submitted_once(folder)) == 4
    # Each job of the first Snakemake is waited for again ("re-attached"), or it ended meanwhile and its
    # summary.json, which --rerun-incomplete deleted, comes back from the job's result, or (the job ended
    # and only Snakemake's benchmark.tsv was missing) the launcher finds the run finished and submits nothing.
    logs = [path.read_text() for path in runs.glob("*/launch.log")]
    outcomes = ("re-attached to slurm job", "summary.json restored", "is already finished; nothing to submit")
    handled = sum(any(outcome in log for outcome in outcomes) for log in logs)
    assert handled + ended_before_kill >= 2, logs


# ---- the paper scale's dress rehearsal, reduced ---------------------------------------------------------
def run_kind(spec) -> tuple[str, str | None]:
    """What kind of job a run is: (stage, method) for a pre-training run, (stage, None) for the others."""
    return (spec.stage, spec.method if spec.stage == "pretrain" else None)


def cheapest_of_each_kind(plan) -> dict[tuple, str]:
    """One run id per kind of job the plan holds: the smallest model at the fewest tokens, and, for an
    evaluation, one starting from a pre-training run already chosen where there is one (fewer upstream jobs)."""
    from normae.model_sizes import MODEL_SIZES

    def cost(spec) -> tuple:
        return (list(MODEL_SIZES).index(spec.model), ((spec.img_size or 224) // spec.patch_size) ** 2)

    chosen: dict[tuple, str] = {}
    for run_id, spec in sorted(plan.pretrain.items(), key=lambda item: cost(item[1])):
        chosen.setdefault(run_kind(spec), run_id)
    pretrained = {f"results/runs/{run_id}/checkpoint.pt" for run_id in chosen.values()}

    def upstream_cost(item) -> tuple:
        upstream = plan.pretrain.get(Path(item[1].init).parent.name)
        return (item[1].init not in pretrained, cost(upstream) if upstream else (0, 0), item[0])

    evaluations = sorted(plan.evaluations.items(), key=upstream_cost)
    for run_id, spec in [*evaluations, *plan.measurements.items()]:
        chosen.setdefault(run_kind(spec), run_id)
    return chosen


def test_reduced_rehearsal_runs_every_kind_of_paper_job_through_slurm(tmp_path):
    """`make rehearse` cut to one run of each kind of job the paper scale plans: pre-training with each of
    its methods (SupMAE's at its smallest pass, DMAE's after its ViT-Large teacher), fine-tuning, linear
    probing, k-NN, segmentation and the bench, on generated ImageNet, CIFAR-10 and ADE20K in their on-disk
    formats, the paper's models at 224 px and global batches, the profile as typed. The kinds come from the
    plan, so a method or stage added to it runs here before it can land. The data is checked before the
    first job, every run goes through sbatch, the cost table says REHEARSAL."""
    import yaml

    from normae.datagen.rehearsal import write_rehearsal_data
    from normae.experiments.config import load_scale, rehearsed
    from normae.experiments.plan import expand, load_experiments
    from normae.spec import METHODS, STAGES

    folders = write_rehearsal_data(tmp_path / "data", train_per_class=1, eval_per_class=1)
    data = {name: str(folder) for name, folder in folders.items() if name != "imagenet100"}
    folder = workflow_folder(tmp_path)
    plan = expand(load_experiments(), rehearsed(load_scale("paper")), data=data)
    chosen = cheapest_of_each_kind(plan)
    every_kind = set(chosen)
    stages = {stage for stage, _ in every_kind}  # the paper scale plans no linear probing (its tables do not)
    assert {("pretrain", method) for method in METHODS} <= every_kind, f"the rehearsal plans {sorted(chosen, key=str)}"
    assert {"finetune", "knn", "segment", "bench"} <= stages <= set(STAGES), stages
    cost_table = next(table.file for table in plan.tables.values() if table.measure == "cost")
    targets = [f"results/runs/{run_id}/summary.json" for run_id in chosen.values()]
    mae = chosen[("pretrain", "mae")]
    analyses = [f"results/analysis/pca/{mae}.json", "results/analysis/cnp_similarity/imagenet1k.json"]
    command = ["snakemake", "--profile", "slurm", *targets, *analyses, f"results/tables/{cost_table}.md"]
    command += ["--config", "scale=paper", "rehearsal=true"]  # targets first: --config takes what follows
    command += [f"data={yaml.safe_dump(data, default_flow_style=True, width=10_000).strip()}"]
    done = subprocess.run(
        command, cwd=folder, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=1500
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-20_000:]
    first_job = [at for at in (output.find("train_run"), output.find("train run")) if at >= 0]  # plain / rich log
    assert first_job, output[-5_000:]
    assert "GENERATED rehearsal data" in output[: min(first_job)], "check-data did not run before the jobs"
    runs = folder / "results" / "runs"
    summaries = {kind: json.loads((runs / run_id / "summary.json").read_text()) for kind, run_id in chosen.items()}
    ran = {run_kind(plan.spec(path.parent.name)) for path in runs.glob("*/summary.json")}
    assert ran == every_kind, f"kinds without a finished run: {sorted(every_kind - ran, key=str)}"
    for run in runs.iterdir():
        assert json.loads((run / "job.json").read_text())["launcher"] == "slurm", run.name
        assert (run / "benchmark.tsv").exists(), run.name
    assert_rehearsal_summaries(summaries, data)
    assert "REHEARSAL" in (folder / "results" / "tables" / f"{cost_table}.md").read_text()
    for analysis in analyses:  # Figure 3 reads the generated ImageNet folder; the PCA the run's data
        assert json.loads((folder / analysis).read_text()), analysis


def assert_rehearsal_summaries(summaries: dict, data: dict) -> None:
    """The paper's image size and global batches were kept; each method ran at its smallest pass."""
    for method in ("mae", "nor_mae", "sup_mae", "sup_nor_mae", "dmae", "nor_dmae"):
        summary = summaries[("pretrain", method)]
        batch = summary["batch"]
        assert summary["image_size"] == 224 and batch["requested"] in (2048, 4096) and batch["capped"], method
        smallest = 2 if method.startswith("sup_") else 1  # SupMAE's BatchNorm head needs two images a pass
        assert (batch["micro_batch"], batch["accum_iter"], batch["global_batch"]) == (smallest, 2 // smallest, 2)
        assert summary["spec"]["data_root"] in data.values(), method
    assert summaries[("finetune", None)]["batch"]["requested"] == 512
    for (stage, _), summary in summaries.items():
        if stage in ("finetune", "linprobe", "knn"):
            assert summary["top1"] is not None, stage
    seg = summaries[("segment", None)]
    assert (seg["crop"], seg["slide_stride"], seg["batch"]["requested"], seg["stand_in_for"]) == (512, 341, 16, None)
    assert seg["miou"] is not None and len(seg["per_class_iou"]) == 150
    assert summaries[("bench", None)]["images"] == "imagenet1k through its pre-training loader"
