"""The GPU-speed path: FLOP counting and MFU, fused attention, torch.compile, the bench's JSON, the loaders
(torchvision and DALI), pre-training with `--loader dali` and the generated JPEG folder. Everything runs on
a CPU except the tests marked `gpu`: no host synchronisation inside a training step, MFU on a real GPU,
DALI's nvJPEG pipeline. The DALI tests run its CPU operators, and skip where DALI is not installed."""

import json
import os
import signal
import sys

import pytest
import torch

from normae.analysis.flops import PEAK_FLOPS, count_flops, mfu, peak_facts, peak_flops
from normae.core.model import build_mae, build_mae_from_spec
from normae.data import dali_loader
from normae.data.pretrain import epoch_order
from normae.datagen.imagenet_like import MANIFEST, SIZES, image_paths, write_imagenet_like
from normae.errors import ConfigError
from normae.spec import BenchSpec, PretrainSpec
from normae.stages.pretrain import pretrain_step
from normae.training.signals import TrainingInterrupted

from helpers import assert_same_run, small_spec

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def cli(argv: list[str]) -> int:
    """``normae`` in this process; a bench on one torch thread (tiny steps on a shared machine's cores slow
    down many times over when their threads wait for each other), then this process's threads as they were."""
    from normae.cli import main

    threads = torch.get_num_threads()
    try:
        return main([*argv, "--threads", "1"] if argv[0] == "bench" else argv)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    """A small generated ImageNet-like folder: 24 pictures in 3 classes."""
    root = tmp_path_factory.mktemp("imagenet-like")
    write_imagenet_like(root, 24, classes=3, workers=1)
    return root


@pytest.fixture(scope="module")
def imagenet_jpegs(tmp_path_factory):
    """A tiny ImageNet-1K style root: train/ and val/ with 4 wnid folders, 5 and 1 small JPEGs each."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet-jpegs")
    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("val", 1)):
        for label in range(4):
            folder = root / split / f"n{label:08d}"
            folder.mkdir(parents=True)
            for number in range(count):
                pixels = rng.integers(0, 256, (36 + 4 * number, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"n{label:08d}_{number}.JPEG", quality=90)
    return root


def dali_spec(root, **overrides) -> PretrainSpec:
    """Pre-training of vit_micro at 32 px through DALI's CPU pipeline: 16 of the 20 images, 4 steps an epoch."""
    settings = dict(dataset="imagenet1k", data_root=str(root), train_samples=16, img_size=32, batch_size=4)
    return small_spec(**{**settings, "loader": "dali", "num_workers": 1, **overrides})


def record_steps(monkeypatch, stop_call: int | None = None) -> list[list[torch.Tensor]]:
    """The batches the pre-training step sees, in order; SIGTERM to this process at call ``stop_call``."""
    from normae.stages import pretrain as stages

    seen: list[list[torch.Tensor]] = []

    def step(model, batch):
        seen.append([item.detach().clone() for item in batch])
        if len(seen) == stop_call:
            os.kill(os.getpid(), signal.SIGTERM)
        return pretrain_step(model, batch)

    monkeypatch.setattr(stages, "pretrain_step", step)
    return seen


# ---------------------------------------------------------------- FLOPs and MFU


def test_a_linear_layer_forward_and_backward_counts_three_matrix_products():
    m, k, n = 8, 16, 32
    layer, inputs = torch.nn.Linear(k, n), torch.randn(m, k, requires_grad=True)
    # forward x W^T, backward dL/dx = g W and dL/dW = g^T x: three products of 2 m n k FLOPs each
    assert count_flops(lambda: layer(inputs).sum().backward()) == 3 * 2 * m * n * k


def test_attention_is_counted_on_the_cpu_as_torch_counts_it_on_cuda():
    from torch.utils.flop_counter import sdpa_flop_count

    q = torch.randn(2, 3, 10, 8)
    counted = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    assert counted == sdpa_flop_count(q.shape, q.shape, q.shape) == 2 * (2 * 2 * 3 * 10 * 10 * 8)


def test_a_counted_mae_forward_agrees_with_the_planners_estimate():
    from normae.model_sizes import image_flops

    model = build_mae("vit_micro", img_size=32, patch_size=4)
    images, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 64)
    with torch.no_grad():
        counted = count_flops(lambda: model(images, noise))
    # the planner counts the transformer blocks only; the patch embedding and the heads add a few per cent
    assert 1.0 <= counted / (2 * image_flops("vit_micro", 32, 4, mask_ratio=0.75)) < 1.15


def test_mfu_divides_the_achieved_rate_by_the_devices_peak():
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989.4e12
    assert peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert peak_flops("NVIDIA H200", "fp16") == 989.4e12
    assert peak_flops("NVIDIA A100-SXM4-80GB", "none") == 19.5e12
    assert peak_flops("NVIDIA L40S", "bf16") == 362e12 and peak_flops("NVIDIA L4", "bf16") == 121e12
    assert mfu(2e12, 0.01, 989.4e12) == pytest.approx(2e14 / 989.4e12)
    assert all(peak > 0 for _, *peaks in PEAK_FLOPS for peak in peaks)


def test_an_unknown_device_and_the_cpu_have_no_mfu():
    assert peak_flops("NVIDIA GeForce GTX 1080", "bf16") is None
    assert mfu(1e12, 0.01, None) is None
    facts = peak_facts(torch.device("cpu"), "none")
    assert facts["peak_flops_per_s"] is None and "cpu" in facts["mfu_note"]
    with pytest.raises(ValueError, match="precision"):
        peak_flops("NVIDIA H100 PCIe", "auto")


# ---------------------------------------------------------------- the model path


def attention_flags(model: torch.nn.Module) -> list[bool]:
    return [module.fused_attn for module in model.modules() if hasattr(module, "fused_attn")]


@pytest.mark.parametrize("method", ["mae", "nor_mae", "sup_mae", "dmae"])
def test_every_attention_of_the_pretraining_models_is_fused(method):
    options = {"num_classes": 10} if method == "sup_mae" else {"teacher_dim": 64} if method == "dmae" else {}
    flags = attention_flags(build_mae("vit_micro", img_size=32, patch_size=4, method=method, **options))
    assert len(flags) == 4 + 2 and all(flags)  # vit_micro: 4 encoder and 2 decoder blocks


def test_every_attention_of_the_classifier_is_fused():
    from normae.core.classifier import build_classifier

    flags = attention_flags(build_classifier("vit_micro", 32, 4, num_classes=10))
    assert len(flags) == 4 and all(flags)


def test_unwrap_finds_the_plain_module_inside_compile_and_ddp_wrappers():
    from normae.training.loop import unwrap

    class DataParallelLike(torch.nn.Module):  # what unwrap needs of DDP: the wrapped model as .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    layer = torch.nn.Linear(2, 2)
    assert unwrap(layer) is layer and unwrap(DataParallelLike(layer)) is layer
    assert unwrap(torch.compile(layer)) is layer and unwrap(torch.compile(DataParallelLike(layer))) is layer
    assert list(unwrap(torch.compile(layer)).state_dict()) == ["weight", "bias"]


@pytest.mark.slow
def test_compiled_pretraining_matches_eager_and_saves_the_plain_weights(tmp_path):
    from normae.stages.pretrain import run_pretrain
    from normae.training.checkpoint import load_checkpoint

    runs = {}
    for compiled in (False, True):
        spec = small_spec(epochs=1, train_samples=16, compile=compiled)  # NoR-MAE, diagnosed on its first step
        run_pretrain(spec, tmp_path / str(compiled))
        lines = [json.loads(line) for line in (tmp_path / str(compiled) / "metrics.jsonl").read_text().splitlines()]
        runs[compiled] = (lines, load_checkpoint(tmp_path / str(compiled) / "checkpoint.pt")["model"])
    (eager_lines, eager_weights), (compiled_lines, compiled_weights) = runs[False], runs[True]
    assert [line.keys() for line in eager_lines] == [line.keys() for line in compiled_lines]
    for eager, compiled in zip(eager_lines, compiled_lines):
        for name in ("loss", "loss_rec", "loss_nor", "nor_grad_share"):
            if name in eager:
                assert compiled[name] == pytest.approx(eager[name], rel=1e-3, abs=1e-6), name
    assert list(compiled_weights) == list(eager_weights)  # no "_orig_mod." prefix
    for key, value in eager_weights.items():
        torch.testing.assert_close(compiled_weights[key], value, rtol=1e-3, atol=1e-5)


# ---------------------------------------------------------------- the bench


def test_bench_on_cpu_writes_the_speed_fields(tmp_path, jpeg_folder, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--model", "vit_micro", "--img-size", "32", "--patch-size", "4", "--batch-size", "4"]
    argv += ["--steps", "2", "--warmup", "1", "--methods", "mae,nor_mae", "--device", "cpu", "--out", str(out)]
    argv += ["--data", str(jpeg_folder), "--loader-images", "8", "--loader-workers", "0"]
    assert cli(argv) == 0
    printed = capsys.readouterr()
    result = json.loads(printed.out.strip().splitlines()[-1])
    assert result == json.loads(out.read_text())
    assert result["device"] == "cpu" and result["precision"] == "none" and result["compile"] is False
    assert result["fused_attention"] is True and result["timing"] == "wall_clock"
    assert result["peak_flops_per_s"] is None and "no MFU" in result["mfu_note"]
    for method in ("mae", "nor_mae"):
        numbers = result[method]
        assert numbers["flops_per_step"] > 0 and numbers["mfu"] is None
        assert numbers["achieved_flops_per_s"] == pytest.approx(numbers["flops_per_step"] / numbers["median_step_s"])
        assert numbers["images_per_s"] == pytest.approx(4 / numbers["median_step_s"])
    assert result["nor_mae"]["flops_per_step"] > result["mae"]["flops_per_step"]  # the second branch's forward
    assert result["nor_over_mae_time"] > 0
    loader = result["loader_throughput"]
    assert loader["loader"] == "torchvision" and loader["images_per_s"] > 0 and loader["batch_shape"] == [4, 3, 32, 32]
    assert "NoR-MAE / MAE: time" in printed.err and "images/s" in printed.err


def test_bench_spec_compile_and_loader_keep_the_default_run_id():
    assert BenchSpec().run_id() == "bench-vit_tiny-p16-224px-b256-synthetic-70d16b3a"  # as before they existed
    assert BenchSpec(compile=True).run_id().startswith("bench-vit_tiny-p16-224px-b256-synthetic-compiled-")
    assert BenchSpec(compile=True).digest() != BenchSpec().digest()  # for the bench, compiling changes the result
    assert "loader-dali" in BenchSpec(loader="dali", data_root="images").run_id()
    with pytest.raises(ConfigError, match="needs data_root"):
        BenchSpec(loader="torchvision")


# ---------------------------------------------------------------- data: the generated folder and the loaders


def test_imagenet_like_images_are_the_same_for_a_seed(tmp_path):
    from PIL import Image

    first = write_imagenet_like(tmp_path / "a", 6, classes=2, workers=1)
    write_imagenet_like(tmp_path / "b", 6, classes=2, workers=2)
    paths = image_paths(tmp_path / "a", 6, 2)
    assert first["images"] == 6 and all(path.parent.parent.name == "train" for path in paths)
    for path in paths:
        assert Image.open(path).format == "JPEG" and Image.open(path).size in SIZES
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
    assert first["mean_bytes"] > 30_000  # pixel noise: photograph-sized files, not flat colours
    stamp = os.stat(paths[0]).st_mtime_ns
    assert write_imagenet_like(tmp_path / "a", 6, classes=2) == first and os.stat(paths[0]).st_mtime_ns == stamp


def test_bench_data_command_writes_the_folder(tmp_path, capsys):
    assert cli(["bench-data", "--out", str(tmp_path), "--images", "4", "--classes", "2", "--workers", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 4 and (tmp_path / MANIFEST).exists()
    assert len(list((tmp_path / "train").glob("*/*.JPEG"))) == 4


def test_the_torchvision_loader_throughput_times_whole_waves_after_the_warmup(jpeg_folder):
    from normae.analysis.loader_throughput import measure_loader

    result = measure_loader("torchvision", jpeg_folder, img_size=32, batch_size=4, images=6, workers=0)
    assert result["warmup_batches"] == 1 and result["measured_batches"] == 2 and result["measured_images"] == 8
    assert result["images_per_s"] > 0 and result["batch_shape"] == [4, 3, 32, 32]
    assert result["data"] == str(jpeg_folder / "train") and result["library"].startswith("torchvision")


def test_one_epoch_order_serves_the_loop_and_dali():
    from torch.utils.data import DistributedSampler

    from normae.training import sampling

    assert sampling.epoch_indices is epoch_order and dali_loader.epoch_order is epoch_order
    for count, epoch, seed, rank, world in [(10, 0, 0, 0, 1), (37, 3, 5, 1, 4), (1000, 7, 2, 2, 3)]:
        sampler = DistributedSampler(
            range(count), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        sampler.set_epoch(epoch)
        assert epoch_order(count, epoch, seed, rank, world) == list(sampler)


def test_dali_seeds_come_from_seed_and_epoch_alone():
    seeds = dali_loader.epoch_seeds(0, 1)
    assert seeds == dali_loader.epoch_seeds(0, 1) and set(seeds) == {"crop", "flip"}
    assert seeds["crop"] != seeds["flip"]
    assert seeds != dali_loader.epoch_seeds(0, 2) and seeds != dali_loader.epoch_seeds(1, 1)
    assert all(0 <= value < 2**31 for value in seeds.values())


def test_dali_lists_files_as_imagefolder_does(jpeg_folder):
    from torchvision.datasets import ImageFolder

    folder = dali_loader.image_folder(jpeg_folder)
    paths, labels = dali_loader.list_images(folder)
    assert list(zip(paths, labels)) == ImageFolder(str(folder)).samples


def test_without_dali_the_loader_names_the_package_to_install(
    monkeypatch, jpeg_folder, imagenet_jpegs, tmp_path, capsys
):
    from normae.stages.pretrain import run_pretrain

    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # an import of it fails, as where it is not installed
    with pytest.raises(ConfigError, match="pip install nvidia-dali-cuda120"):
        dali_loader.DaliLoader.from_folder(jpeg_folder, 32, 4, device="cpu")
    with pytest.raises(ConfigError, match="pip install nvidia-dali-cuda120"):
        run_pretrain(dali_spec(imagenet_jpegs), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    argv = ["bench", "--loader", "dali", "--data", str(jpeg_folder), "--loader-only", "--device", "cpu"]
    assert cli(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("normae bench: error:") and "pip install nvidia-dali-cuda120" in line


def test_the_dali_pipeline_runs_on_the_cpu_and_repeats_an_epoch(jpeg_folder):
    pytest.importorskip("nvidia.dali")
    loader = dali_loader.DaliLoader.from_folder(jpeg_folder, 32, 4, device="cpu", num_threads=1)
    order = epoch_order(len(loader.paths), 0, 0)

    def read(indices, epoch):
        return [
            (images.clone(), labels.clone())
            for images, labels in loader.batches(indices, dali_loader.epoch_seeds(0, epoch))
        ]

    first, again, other = read(order, 0), read(order, 0), read(order, 1)
    assert len(first) == 6 and first[0][0].shape == (4, 3, 32, 32) and first[0][0].dtype == torch.float32
    assert all(torch.equal(a, b) and torch.equal(la, lb) for (a, la), (b, lb) in zip(first, again))
    assert not torch.equal(first[0][0], other[0][0])
    assert torch.cat([labels for _, labels in first]).tolist() == [loader.labels[i] for i in order]  # our order
    pixels = torch.cat([images for images, _ in first])
    assert -3 < pixels.mean() < 3 and pixels.std() > 0.2  # normalised with ImageNet's mean and std
    assert len(read(order[:7], 0)) == 1 and read([], 0) == []  # whole batches only


def test_dali_reads_the_files_of_the_data_set_the_run_built(imagenet_jpegs):
    from torch.utils.data import Subset

    from normae.data.pretrain import build_pretrain_dataset
    from normae.data.sources import GeneratedImages

    folder = build_pretrain_dataset("imagenet1k", root=imagenet_jpegs, img_size=32)
    paths, labels = dali_loader.dataset_files(folder)
    assert list(zip(paths, labels)) == [(str(path), label) for path, label in folder.samples]
    subset = Subset(Subset(folder, [3, 1, 19, 7]), [2, 0])
    assert dali_loader.dataset_files(subset) == ([paths[19], paths[3]], [labels[19], labels[3]])
    with pytest.raises(ConfigError, match="GeneratedImages has none: use loader torchvision"):
        dali_loader.dataset_files(Subset(GeneratedImages(4), [0]))


# ---------------------------------------------------------------- pre-training with --loader dali


def test_the_dali_loader_is_in_the_run_id_only_when_chosen():
    # run ids from before the loader option existed
    assert PretrainSpec().run_id() == "fmnist-vit_tiny-p2-nor_mae-lam5e-05-mr0.75-ep200-s0-af4b603f"
    imagenet = dict(dataset="imagenet1k", model="vit_base", patch_size=16, img_size=224, method="mae")
    assert PretrainSpec(**imagenet).run_id() == "in1k-vit_base-p16-mae-mr0.75-ep200-s0-fe8a60a2"
    assert PretrainSpec(**imagenet, loader="torchvision").digest() == PretrainSpec(**imagenet).digest()
    dali = PretrainSpec(**imagenet, loader="dali")
    assert dali.digest() != PretrainSpec(**imagenet).digest()
    assert dali.run_id().startswith("in1k-vit_base-p16-mae-mr0.75-ep200-dali-s0-")
    assert "-dali-" in PretrainSpec(dataset="imagenet100", loader="dali").run_id()
    with pytest.raises(
        ConfigError, match="loader dali reads image folders .*not fashion_mnist: use loader torchvision"
    ):
        PretrainSpec(loader="dali")
    with pytest.raises(ConfigError, match="loader must be one of"):
        PretrainSpec.from_dict({"dataset": "imagenet1k", "loader": "nvjpeg"})


def test_dali_mask_noise_is_each_samples_whatever_its_batch():
    from normae.training.dali_batches import sample_noise, with_noise

    indices = [5, 2, 9, 0, 7, 3]

    def noise_by_index(batch_size, epoch):
        batches = [(torch.zeros(batch_size, 1), torch.zeros(batch_size)) for _ in range(len(indices) // batch_size)]
        rows = torch.cat([noise for _, _, noise in with_noise(batches, indices, 4, epoch, 16)])
        return dict(zip(indices, rows))

    by_two, by_three = noise_by_index(2, 1), noise_by_index(3, 1)
    for index in indices:
        assert torch.equal(by_two[index], by_three[index]) and torch.equal(by_two[index], sample_noise(4, 1, index, 16))
    assert not torch.equal(by_two[5], by_two[2]) and not torch.equal(by_two[5], noise_by_index(2, 2)[5])
    assert by_two[5].shape == (16,) and by_two[5].min() >= 0 and by_two[5].max() < 1


@pytest.mark.slow
def test_pretraining_through_dali_reads_the_runs_files_in_the_loops_order(tmp_path, monkeypatch, imagenet_jpegs):
    pytest.importorskip("nvidia.dali")
    from normae.data.pretrain import build_pretrain_dataset
    from normae.stages.common import fixed_subset
    from normae.stages.pretrain import run_pretrain
    from normae.training.dali_batches import sample_noise

    spec = dali_spec(imagenet_jpegs)
    seen = record_steps(monkeypatch)
    summary = run_pretrain(spec, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final"] == summary["final"]
    assert summary["optimizer_steps"] == 8 and summary["train_images"] == 16
    _, labels = dali_loader.dataset_files(fixed_subset(build_pretrain_dataset("imagenet1k", imagenet_jpegs), 16))
    for epoch in (0, 1):
        order = epoch_order(16, epoch, spec.seed)
        batches = seen[4 * epoch : 4 * epoch + 4]
        assert torch.cat([batch[1] for batch in batches]).tolist() == [labels[i] for i in order]
        noise = torch.stack([sample_noise(spec.seed, epoch, index, 64) for index in order])
        assert torch.equal(torch.cat([batch[2] for batch in batches]), noise)
    assert seen[0][0].shape == (4, 3, 32, 32)


@pytest.mark.slow
def test_dali_run_resumed_at_an_epoch_boundary_equals_the_uninterrupted_run(tmp_path, monkeypatch, imagenet_jpegs):
    pytest.importorskip("nvidia.dali")
    from normae.stages.pretrain import run_pretrain
    from normae.training.checkpoint import load_checkpoint

    spec = dali_spec(imagenet_jpegs)
    run_pretrain(spec, tmp_path / "straight")
    record_steps(monkeypatch, stop_call=4)  # the last step of the first epoch
    with pytest.raises(TrainingInterrupted):
        run_pretrain(spec, tmp_path / "stopped")
    state = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["loop"]
    assert (state["epoch"], state["batches_done"]) == (0, 4)  # nothing of the epoch left: the next one reads afresh
    run_pretrain(spec, tmp_path / "stopped", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")


@pytest.mark.slow
def test_dali_run_resumed_inside_an_epoch_keeps_order_and_noise_not_crops(tmp_path, monkeypatch, imagenet_jpegs):
    pytest.importorskip("nvidia.dali")
    from normae.stages.pretrain import run_pretrain

    spec = dali_spec(imagenet_jpegs)
    straight = record_steps(monkeypatch)
    run_pretrain(spec, tmp_path / "straight")
    resumed = record_steps(monkeypatch, stop_call=2)  # the checkpoint holds 2 of the first epoch's 4 batches
    with pytest.raises(TrainingInterrupted):
        run_pretrain(spec, tmp_path / "stopped")
    run_pretrain(spec, tmp_path / "stopped", resume=True)
    assert len(straight) == len(resumed) == 8
    for call, (a, b) in enumerate(zip(straight, resumed), start=1):
        assert torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]), call  # the same images in order, the same noise
        # the rest of the interrupted epoch comes from a pipeline over its remaining files: other crops
        assert torch.equal(a[0], b[0]) == (call not in (3, 4)), call


# ---------------------------------------------------------------- on a GPU


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("method", ["mae", "nor_mae"])
def test_pretraining_steps_never_wait_for_the_gpu(method):
    """Forward, backward and the fused AdamW step, as the pre-training loop runs them, under bf16."""
    from timm.optim import param_groups_weight_decay

    from normae.stages.pretrain import pretrain_step
    from normae.training.optim import adamw
    from normae.training.runtime import autocast

    device = torch.device("cuda")
    spec = PretrainSpec(dataset="generated", model="vit_tiny", img_size=224, patch_size=16, method=method)
    model = build_mae_from_spec(spec, 224).to(device)
    optimizer = adamw(param_groups_weight_decay(model, 0.05, model.no_weight_decay()), 1e-4, (0.9, 0.95), device)
    batches = [
        (torch.randn(8, 3, 224, 224, device=device), torch.zeros(8, dtype=torch.long, device=device),
         torch.rand(8, 196, device=device))
        for _ in range(4)
    ]  # fmt: skip

    def step(batch):
        with autocast("bf16", device):
            loss, _ = pretrain_step(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(batches[0])  # the first step sets up cuBLAS, the attention kernels and the optimiser's state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches[1:]:
            step(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@pytest.mark.gpu
@needs_cuda
def test_bench_on_cuda_reports_mfu_and_peak_memory():
    from normae.analysis.bench import run_bench

    name = torch.cuda.get_device_name(0)
    if peak_flops(name, "bf16") is None:
        pytest.skip(f"{name} has no peak in normae.analysis.flops.PEAK_FLOPS")
    result = run_bench(BenchSpec(model="vit_tiny", batch_size=64, steps=3, warmup=1, methods="mae,nor_mae"))
    assert result["precision"] == "bf16" and result["timing"] == "cuda_events" and result["mfu_note"] is None
    for method in ("mae", "nor_mae"):
        assert 0 < result[method]["mfu"] < 1 and result[method]["peak_memory_mib"] > 0
    assert result["nor_over_mae_time"] > 0 and result["nor_over_mae_memory"] > 0


@pytest.mark.gpu
@needs_cuda
def test_the_dali_loader_decodes_on_the_gpu(jpeg_folder):
    pytest.importorskip("nvidia.dali")
    from normae.analysis.loader_throughput import measure_loader

    result = measure_loader("dali", jpeg_folder, img_size=32, batch_size=4, images=8)
    assert result["decode_device"] == "gpu" and result["images_per_s"] > 0 and result["batch_shape"] == [4, 3, 32, 32]
