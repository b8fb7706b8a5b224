"""The normae command line as a user runs it: real Fashion-MNIST, signals, bad input, the bench."""

import json
import signal
import subprocess
import time

import pytest
import torch

from normae.cli import build_parser
from normae.spec import PAPER_LAMBDA, BenchSpec, PretrainSpec
from normae.training.checkpoint import load_checkpoint

from helpers import NORMAE, job_env, normae, small_spec


def test_help_explains_every_option():
    text = build_parser()._subparsers._group_actions[0].choices["pretrain"].format_help()
    for field in PretrainSpec.__dataclass_fields__:
        assert "--" + field.replace("_", "-") in text, field
    assert "--resume" in text and "summary.json" in text


def test_bench_without_options_measures_what_bench_spec_says():
    from normae.cli.bench import bench_spec

    assert bench_spec(build_parser().parse_args(["bench"])) == BenchSpec()
    help_text = build_parser()._subparsers._group_actions[0].choices["bench"].format_help()
    assert f"(default: {BenchSpec().batch_size})" in help_text and f"(default: {BenchSpec().steps})" in help_text


def test_bench_options_reach_its_spec_and_data_alone_times_torchvision(tmp_path):
    from normae.cli.bench import bench_spec

    argv = ["bench", "--batch-size", "4", "--methods", "mae,nor_mae", "--compile", "--data", str(tmp_path)]
    spec = bench_spec(build_parser().parse_args(argv))
    assert (spec.batch_size, spec.methods, spec.compile) == (4, "mae,nor_mae", True)
    assert (spec.loader, spec.data_root, spec.steps) == ("torchvision", str(tmp_path), BenchSpec().steps)


def test_the_papers_lambda_is_every_default_lambda():
    import inspect

    from normae.core.model import MaskedAutoencoderViT

    defaults = [PretrainSpec().lam, BenchSpec().lam, inspect.signature(MaskedAutoencoderViT).parameters["lam"].default]
    assert defaults == [PAPER_LAMBDA] * 3 and PAPER_LAMBDA == 5e-5


@pytest.mark.slow
def test_pretrain_on_fashion_mnist_end_to_end(tmp_path, fashion_mnist_root):
    result = normae(
        [
            "pretrain",
            "--data-root",
            str(fashion_mnist_root),
            "--model",
            "vit_micro",
            "--train-samples",
            "256",
            "--epochs",
            "2",
            "--warmup-epochs",
            "1",
            "--batch-size",
            "32",
            "--num-workers",
            "0",
            "--out",
            "run",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    expected = {"spec.json", "checkpoint.pt", "metrics.jsonl", "summary.json", ".training.lock"}
    assert {p.name for p in run.iterdir()} - {"events"} == expected  # events/: only where tensorboard is installed
    spec = PretrainSpec.from_json(run / "spec.json")
    assert (spec.dataset, spec.patch_size, spec.cnp) == ("fashion_mnist", 2, "paper")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["num_patches"] == 196 and summary["train_images"] == 256 and summary["epochs"] == 2
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    epoch_lines = [line for line in epochs if line["kind"] == "epoch"]
    assert len(epoch_lines) == 2 and epoch_lines[1]["loss_rec"] < epoch_lines[0]["loss_rec"]
    assert summary["final"]["loss_nor"] != 0
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed["loss"] == summary["final"]["loss"]


@pytest.mark.slow
def test_sigterm_to_the_process_then_resume(tmp_path):
    spec = small_spec(epochs=3, warmup_epochs=1, img_size=32, patch_size=4, train_samples=128)
    (tmp_path / "spec.json").write_text(spec.to_json())
    assert normae(["pretrain", "--spec", "spec.json", "--out", "straight"], tmp_path).returncode == 0

    process = subprocess.Popen(
        NORMAE + ["pretrain", "--spec", "spec.json", "--out", "stopped"],
        cwd=tmp_path,
        env=job_env(),  # the threads normae() gives the straight run: the same floating-point reductions
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "stopped" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "--resume" in stderr
    assert not (tmp_path / "stopped" / "summary.json").exists()

    resumed = normae(["pretrain", "--spec", "spec.json", "--out", "stopped", "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "straight" / "metrics.jsonl").read_text() == metrics.read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--img-size", "28", "--patch-size", "5"], "does not divide"),
        (["--method", "simclr"], "invalid choice: 'simclr'"),
        (["--dataset", "imagenet100"], "ImageNet-1K"),
        (["--data-root", "/nonexistent/fmnist"], "make data"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, args, message):
    result = normae(["pretrain", "--out", "run", "--epochs", "1", "--warmup-epochs", "0", *args], tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def write_bad_input(tmp_path, kind: str) -> tuple[list[str], dict]:
    """The command line (and environment) that meets one kind of NormaeError."""
    env = None
    if kind == "ConfigError":
        args = ["tables", "no_such_table"]
    elif kind == "RunFolderError":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "spec.json").write_text(small_spec(lam=1e-4).to_json())
        args = ["pretrain", "--spec", "spec.json", "--out", "run"]
    elif kind == "CheckpointError":
        (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
        args = ["finetune", "--init", "garbage.pt", "--dataset", "generated", "--model", "vit_micro", "--out", "ft"]
    elif kind == "DataNotFoundError":
        args = ["pretrain", "--dataset", "imagenet1k", "--data-root", str(tmp_path / "nowhere"), "--out", "run"]
    elif kind == "CorruptDataError":
        (tmp_path / "fmnist").mkdir()
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ):
            (tmp_path / "fmnist" / name).write_bytes(b"garbage")
        args = ["pretrain", "--data-root", "fmnist", "--out", "run"]
    elif kind == "LaunchError":
        env = {"PATH": str(tmp_path / "no-sbatch-here"), "HOME": str(tmp_path)}
        args = ["launch", "--spec", "spec.json", "--out", "run", "--launcher", "slurm"]
    else:
        assert kind == "MissingResultError"
        (tmp_path / "unfinished").mkdir()
        args = ["summarize", "unfinished"]
    (tmp_path / "spec.json").write_text(small_spec().to_json())
    return args, env


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        "ConfigError",
        "RunFolderError",
        "CheckpointError",
        "DataNotFoundError",
        "CorruptDataError",
        "LaunchError",
        "MissingResultError",
    ],
)
def test_every_kind_of_user_error_is_one_line(tmp_path, kind):
    from normae import errors

    assert issubclass(getattr(errors, kind), errors.NormaeError)
    args, env = write_bad_input(tmp_path, kind)
    result = normae(args, tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    # One error line, last but for the expected layout that data errors add below it.
    starts = [index for index, line in enumerate(lines) if line.startswith(f"normae {args[0]}: error: ")]
    assert len(starts) == 1, result.stderr
    assert kind == "DataNotFoundError" or starts == [len(lines) - 1], result.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("command", ["pretrain", "finetune", "linprobe", "knn", "segment"])
def test_training_commands_require_out(command, capsys):
    """#22: `normae pretrain` with no arguments trained 200 epochs into results/runs, among the workflow's runs."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"normae {command}: error: the following arguments are required: --out"


def test_spec_file_with_unknown_key_is_refused(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps({"lamda": 1e-4}))
    result = normae(["pretrain", "--spec", "spec.json", "--out", "run"], tmp_path)
    assert result.returncode == 2 and "unknown spec keys ['lamda']" in result.stderr


@pytest.mark.slow
def test_bench_prints_one_json_line_with_ratios(tmp_path):
    result = normae(
        [
            "bench",
            "--model",
            "vit_micro",
            "--img-size",
            "32",
            "--patch-size",
            "4",
            "--batch-size",
            "4",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--methods",
            "mae,nor_mae",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    for method in ("mae", "nor_mae"):
        assert report[method]["median_step_s"] > 0
        assert report[method]["images_per_s"] == pytest.approx(4 / report[method]["median_step_s"])
    paired = sorted(n / m for n, m in zip(report["nor_mae"]["step_times_s"], report["mae"]["step_times_s"]))
    assert len(paired) == 2 and report["nor_over_mae_time"] == pytest.approx((paired[0] + paired[1]) / 2)
    assert report["memory_kind"] == "cpu_peak_rss_growth_mib"
    assert report["nor_over_mae_memory"] is None or report["nor_over_mae_memory"] > 0


def test_plan_command_lists_every_table(tmp_path):
    result = normae(["plan", "--scale", "tiny"], tmp_path)
    assert result.returncode == 0, result.stderr
    for table in ("T1:", "T2:", "T3:", "T4:", "T5:", "T6:", "T7:"):
        assert table in result.stdout
    assert "pre-training runs" in result.stdout and "not_implemented" not in result.stdout  # every row runs
