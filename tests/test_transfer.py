"""Fine-tuning and linear probing: param groups, pooling, heads, losses, checkpoint loading, runs."""

import argparse
import collections
import inspect
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.models.vision_transformer import VisionTransformer
from timm.optim import Lars
from torch import nn

from normae.core.classifier import (
    CheckpointError,
    build_classifier,
    encoder_weights,
    evaluate,
    load_encoder,
    make_linear_probe,
    read_checkpoint,
)
from normae.core.model import MODEL_SIZES, build_mae
from normae.data.classification import CLASSIFICATION_SETS, build_classification_dataset
from normae.data.transforms import eval_transform
from normae.spec import FinetuneSpec, LinprobeSpec
from normae.stages import transfer
from normae.training.checkpoint import load_checkpoint
from normae.training.loop import LoopConfig, Trainer
from normae.training.signals import TrainingInterrupted

MICRO = MODEL_SIZES["vit_micro"]
DECODER_PREFIXES = ("decoder_", "mask_token")


def downstream_settings(**overrides) -> dict:
    settings = {
        "dataset": "generated",
        "train_samples": 16,
        "model": "vit_micro",
        "patch_size": 4,
        "img_size": 16,
        "epochs": 2,
        "warmup_epochs": 1,
        "batch_size": 8,
        "amp": "none",
        "num_workers": 0,
        "checkpoint_minutes": 0,
        "log_every": 1,
    }
    settings.update(overrides)
    return settings


def ft_spec(**overrides) -> FinetuneSpec:
    return FinetuneSpec(**downstream_settings(**overrides))


def lp_spec(**overrides) -> LinprobeSpec:
    return LinprobeSpec(**downstream_settings(**overrides))


def encoder_part(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith(DECODER_PREFIXES)}


@pytest.fixture(scope="module")
def pretrained_state(pretrained):
    return load_checkpoint(pretrained / "checkpoint.pt")["model"]


@pytest.fixture(scope="module")
def finetuned(pretrained, tmp_path_factory):
    """A short fine-tuning run from the pre-trained encoder (folder)."""
    run_dir = tmp_path_factory.mktemp("finetune") / "run"
    transfer.run_transfer(ft_spec(init=str(pretrained)), run_dir)
    return run_dir


class StopBuilding(Exception):
    pass


def capture_trainer(monkeypatch) -> dict:
    """Replace the Trainer that run_transfer builds; its arguments land in the returned dict."""
    captured = {}

    class FakeTrainer:
        def __init__(self, model, dataset, cfg, run_dir, step_fn, optimizer, device, **kwargs):
            captured.update(model=model, dataset=dataset, cfg=cfg, step_fn=step_fn, optimizer=optimizer, **kwargs)

        def fit(self, resume=False):
            raise StopBuilding

    monkeypatch.setattr(transfer, "Trainer", FakeTrainer)
    return captured


def built(monkeypatch, tmp_path, spec) -> dict:
    captured = capture_trainer(monkeypatch)
    with pytest.raises(StopBuilding):
        transfer.run_transfer(spec, tmp_path / "run")
    captured.update(inspect.getclosurevars(captured["step_fn"]).nonlocals)
    return captured


# ---- 1. layer-wise lr decay ------------------------------------------------------------------


def expected_layer_id(name: str, depth: int) -> int:
    """MAE's lr_decay.get_layer_id_for_vit: stem 0, blocks.i -> i + 1, the rest (head, fc_norm) depth + 1."""
    if name.startswith(("cls_token", "pos_embed", "patch_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def test_layer_decay_groups_follow_mae():
    model = build_classifier("vit_micro", 16, 4, 10)
    decay, depth = 0.65, MICRO.depth
    optimizer = transfer.optimizer_for(FinetuneSpec(layer_decay=decay), model, lr=1e-3)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.9, 0.999)
    num_layers = depth + 1
    group_of = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            assert id(parameter) not in group_of, "a parameter is in two groups"
            group_of[id(parameter)] = group
    named = dict(model.named_parameters())
    assert set(group_of) == {id(p) for p in named.values()}
    for name, parameter in named.items():
        group = group_of[id(parameter)]
        scale = decay ** (num_layers - expected_layer_id(name, depth))
        assert group["lr_scale"] == pytest.approx(scale, rel=1e-9), name
        no_decay = parameter.ndim <= 1 or name in ("cls_token", "pos_embed")
        assert group["weight_decay"] == (0.0 if no_decay else 0.05), name
    scales = {name: group_of[id(p)]["lr_scale"] for name, p in named.items()}
    assert scales["head.weight"] == scales["head.bias"] == scales["fc_norm.weight"] == 1.0
    for i in range(depth):
        assert scales[f"blocks.{i}.attn.qkv.weight"] == pytest.approx(decay ** (depth - i))
    smallest = min(scales.values())
    assert smallest == pytest.approx(decay ** (depth + 1))
    assert scales["patch_embed.proj.weight"] == scales["cls_token"] == scales["pos_embed"] == smallest
    assert group_of[id(named["head.weight"])]["weight_decay"] == 0.05
    assert group_of[id(named["blocks.0.norm1.weight"])]["weight_decay"] == 0.0


class RandomImages(torch.utils.data.Dataset):
    def __init__(self, n, size=16, classes=10):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, size, size, generator=generator)
        self.labels = torch.arange(n) % classes

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])


def test_trainer_applies_lr_times_lr_scale(tmp_path):
    torch.manual_seed(0)
    model = build_classifier("vit_micro", 16, 4, 10)
    base_lr = 1e-3
    optimizer = transfer.optimizer_for(FinetuneSpec(), model, lr=base_lr)
    seen = []

    def step(model, batch):
        seen.append([(group["lr"], group["lr_scale"]) for group in optimizer.param_groups])
        images, targets = batch
        return F.cross_entropy(model(images), targets), {}

    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    cfg = LoopConfig(epochs=1, batch_size=4, lr=base_lr, warmup_epochs=0, min_lr=0.0, num_workers=0, log_every=1)
    Trainer(model, RandomImages(4), cfg, tmp_path, step, optimizer, "cpu").fit()
    assert len(seen) == 1
    scales = {scale for _, scale in seen[0]}
    assert len(scales) == MICRO.depth + 2
    for lr, scale in seen[0]:
        assert lr == pytest.approx(base_lr * scale, rel=1e-12)
    # Adam's first step moves each parameter by about lr (|g| >> eps): the groups' lrs are really used.
    for name in ("head.bias", "pos_embed", "blocks.1.norm1.bias", "fc_norm.bias"):
        scale = next(
            g["lr_scale"]
            for g in optimizer.param_groups
            if any(p is dict(model.named_parameters())[name] for p in g["params"])
        )
        moved = (dict(model.named_parameters())[name].detach() - before[name]).abs().flatten()
        assert moved.median().item() == pytest.approx(base_lr * scale, rel=0.02), name


# ---- 2. linear probe ---------------------------------------------------------------------------


def test_make_linear_probe_freezes_all_but_the_head():
    model = build_classifier("vit_micro", 16, 4, 10, global_pool="token")
    head = model.head
    trainable = make_linear_probe(model)
    assert isinstance(model.head, nn.Sequential) and len(model.head) == 2
    norm, linear = model.head
    assert (
        isinstance(norm, nn.BatchNorm1d)
        and not norm.affine
        and norm.eps == 1e-6
        and norm.num_features == MICRO.embed_dim
    )
    assert linear is head and linear.in_features == MICRO.embed_dim and linear.out_features == 10
    assert {id(p) for p in trainable} == {id(linear.weight), id(linear.bias)}
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.1.weight", "head.1.bias"]
    model(torch.randn(4, 3, 16, 16)).logsumexp(-1).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is not None] == ["head.1.weight", "head.1.bias"]


def test_linear_probe_run_keeps_the_encoder_frozen(pretrained, pretrained_state, tmp_path, monkeypatch):
    captured = {}
    real_probe, real_optimizer = transfer.make_linear_probe, transfer.optimizer_for

    def probe(model):
        result = real_probe(model)
        captured["model"] = model
        captured["head"] = {k: v.detach().clone() for k, v in model.head.state_dict().items()}
        return result

    def optimizer_for(spec, model, lr, device):
        captured["optimizer"] = real_optimizer(spec, model, lr, device)
        return captured["optimizer"]

    monkeypatch.setattr(transfer, "make_linear_probe", probe)
    monkeypatch.setattr(transfer, "optimizer_for", optimizer_for)
    spec = lp_spec(
        init=str(pretrained), model="vit_tiny", patch_size=2, img_size=None, epochs=1, warmup_epochs=0, lr=0.5
    )
    summary = transfer.run_transfer(spec, tmp_path / "lp")
    assert (summary["model"], summary["patch_size"], summary["image_size"]) == ("vit_micro", 4, 16)

    model = captured["model"]
    assert (
        model.global_pool == "token" and isinstance(model.norm, nn.LayerNorm) and isinstance(model.fc_norm, nn.Identity)
    )
    saved = load_checkpoint(tmp_path / "lp" / "checkpoint.pt")["model"]
    encoder = encoder_part(pretrained_state)
    assert "norm.weight" in encoder and "blocks.3.mlp.fc2.weight" in encoder
    for key, value in encoder.items():
        assert torch.equal(saved[key], value), f"{key} changed during linear probing"
    assert set(saved) - set(encoder) == {
        "head.0.running_mean",
        "head.0.running_var",
        "head.0.num_batches_tracked",
        "head.1.weight",
        "head.1.bias",
    }
    assert not torch.equal(saved["head.1.weight"], captured["head"]["1.weight"])
    assert not torch.equal(saved["head.1.bias"], captured["head"]["1.bias"])
    assert saved["head.0.num_batches_tracked"].item() == 2  # BatchNorm statistics follow the training batches
    assert not torch.equal(saved["head.0.running_mean"], captured["head"]["0.running_mean"])

    optimizer = captured["optimizer"]
    assert isinstance(optimizer, Lars)
    weights, biases = optimizer.param_groups
    assert all(group["momentum"] == 0.9 for group in optimizer.param_groups)
    assert weights["always_adapt"] is True and [p.shape for p in weights["params"]] == [(10, MICRO.embed_dim)]
    assert [p.shape for p in biases["params"]] == [(10,)]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 2


def test_linear_probe_bias_gets_no_weight_decay():
    model = build_classifier("vit_micro", 16, 4, 10, global_pool="token")
    make_linear_probe(model)
    optimizer = transfer.optimizer_for(LinprobeSpec(weight_decay=0.05), model, lr=0.1)
    bias_group = next(g for g in optimizer.param_groups if any(p is model.head[1].bias for p in g["params"]))
    assert bias_group["weight_decay"] == 0.0


def test_linear_probe_head_init_is_mae_s(tmp_path, monkeypatch):
    captured = built(monkeypatch, tmp_path, lp_spec(init="none"))
    weight = captured["model"].head[1].weight
    assert weight.std().item() == pytest.approx(0.01, rel=0.2)


# ---- 3. pooling ----------------------------------------------------------------------------


def test_finetune_classifier_pools_patch_tokens_through_fc_norm(pretrained_state):
    torch.manual_seed(0)
    model = build_classifier("vit_micro", 16, 4, 10).eval()
    load_encoder(model, pretrained_state)
    assert (
        model.global_pool == "avg" and isinstance(model.norm, nn.Identity) and isinstance(model.fc_norm, nn.LayerNorm)
    )
    # The pre-trained final norm is not used: fc_norm starts fresh.
    assert torch.equal(model.fc_norm.weight, torch.ones(MICRO.embed_dim)) and torch.equal(
        model.fc_norm.bias, torch.zeros(MICRO.embed_dim)
    )
    nn.init.normal_(model.head.weight, std=0.1)
    nn.init.normal_(model.fc_norm.weight, mean=1.0, std=0.2)
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        features = model.forward_features(images)
        assert features.shape == (3, 1 + 16, MICRO.embed_dim)
        expected = model.head(model.fc_norm(features[:, 1:].mean(dim=1)))
        torch.testing.assert_close(model.forward_head(features), expected)
        torch.testing.assert_close(model(images), expected)
        assert not torch.allclose(model.head(model.fc_norm(features[:, 0])), expected)


def test_linprobe_classifier_uses_cls_token_through_pretrained_norm(pretrained_state):
    model = build_classifier("vit_micro", 16, 4, 10, global_pool="token").eval()
    load_encoder(model, pretrained_state)
    assert (
        model.global_pool == "token" and isinstance(model.norm, nn.LayerNorm) and isinstance(model.fc_norm, nn.Identity)
    )
    assert torch.equal(model.norm.weight, pretrained_state["norm.weight"]) and torch.equal(
        model.norm.bias, pretrained_state["norm.bias"]
    )
    nn.init.normal_(model.head.weight, std=0.1)
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        x = model.patch_embed(images)
        x = torch.cat([model.cls_token.expand(3, -1, -1), x], dim=1) + model.pos_embed
        for block in model.blocks:
            x = block(x)
        expected = model.head(
            F.layer_norm(
                x[:, 0], (MICRO.embed_dim,), pretrained_state["norm.weight"], pretrained_state["norm.bias"], 1e-6
            )
        )
        torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-6)


def test_run_transfer_builds_avg_pool_for_finetune_and_token_for_linprobe(tmp_path, monkeypatch):
    finetune = built(monkeypatch, tmp_path / "ft", ft_spec(init="none"))["model"]
    assert (
        finetune.global_pool == "avg"
        and isinstance(finetune.norm, nn.Identity)
        and isinstance(finetune.fc_norm, nn.LayerNorm)
    )
    assert finetune.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    probe = built(monkeypatch, tmp_path / "lp", lp_spec(init="none"))["model"]
    assert (
        probe.global_pool == "token" and isinstance(probe.norm, nn.LayerNorm) and isinstance(probe.fc_norm, nn.Identity)
    )
    assert isinstance(probe.head[0], nn.BatchNorm1d)
    assert all(isinstance(block.drop_path1, nn.Identity) for block in probe.blocks)


# ---- 4. head init ------------------------------------------------------------------------


def test_head_init_std_2e5_and_zero_bias(pretrained_state):
    torch.manual_seed(0)
    model = build_classifier("vit_micro", 16, 4, 1000)  # 64,000 head weights: a tight std estimate
    weight = model.head.weight.detach()
    assert weight.std().item() == pytest.approx(2e-5, rel=0.03)
    assert abs(weight.mean().item()) < 1e-6
    assert torch.equal(model.head.bias, torch.zeros(1000))
    micro = build_classifier("vit_micro", 16, 4, 10)
    head = micro.head.weight.detach().clone()
    load_encoder(micro, pretrained_state)
    assert torch.equal(micro.head.weight, head) and not micro.head.bias.any()
    assert micro.head.weight.abs().max().item() < 2e-4


# ---- 5. losses and mixup ---------------------------------------------------------------------


def test_classification_step_mixes_images_and_soft_targets():
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=10)
    seen = {}

    def criterion(logits, targets):
        seen["logits"], seen["targets"] = logits, targets
        return logits.sum() * 0

    class Recorder(nn.Module):
        def forward(self, images):
            seen["images"] = images.clone()
            return images.flatten(1)[:, :10]

    step = transfer.classification_step(criterion, mixup)
    np.random.seed(0)
    modes = set()
    for _ in range(12):
        images = torch.rand(6, 3, 8, 8) + 0.1
        labels = torch.tensor([0, 1, 2, 3, 4, 5])
        originals = images.clone()
        loss, metrics = step(Recorder(), (images, labels))
        assert metrics == {} and loss.item() == 0
        targets = seen["targets"]
        assert targets.shape == (6, 10)
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(6))
        assert targets.max().item() < 1 - 1e-3 and (targets > 0).all()  # soft, smoothed: not one-hot
        assert torch.equal(seen["logits"], seen["images"].flatten(1)[:, :10])
        # Batch-mode pairing with the flipped batch: target = lam * s(y) + (1 - lam) * s(y flipped).
        lam = (targets[0, 0].item() - 0.01) / 0.9

        def smooth(y):
            return F.one_hot(y, 10).float() * 0.9 + 0.01

        torch.testing.assert_close(targets, lam * smooth(labels) + (1 - lam) * smooth(labels.flip(0)))
        flipped, mixed = originals.flip(0), seen["images"]
        if torch.allclose(mixed, lam * originals + (1 - lam) * flipped, atol=1e-6):
            modes.add("mixup")
        else:
            from_flipped = (mixed == flipped) & (mixed != originals)
            assert ((mixed == originals) | from_flipped).all()
            assert from_flipped[:, 0].float().mean(dim=(1, 2)).sub(1 - lam).abs().max().item() < 1e-6
            modes.add("cutmix")
    assert modes == {"mixup", "cutmix"}


def test_finetune_defaults_use_mixup_and_soft_target_ce(tmp_path, monkeypatch):
    captured = built(monkeypatch, tmp_path, ft_spec(init="none"))
    mixup, criterion = captured["mixup"], captured["criterion"]
    assert isinstance(criterion, SoftTargetCrossEntropy)
    assert isinstance(mixup, Mixup)
    assert (mixup.mixup_alpha, mixup.cutmix_alpha, mixup.label_smoothing, mixup.num_classes) == (0.8, 1.0, 0.1, 10)
    assert mixup.mix_prob == 1.0 and mixup.switch_prob == 0.5 and mixup.mode == "batch"


@pytest.mark.parametrize(
    "stage, overrides, kind",
    [
        ("finetune", {"mixup": 0.0, "cutmix": 0.0, "smoothing": 0.1}, LabelSmoothingCrossEntropy),
        ("finetune", {"mixup": 0.0, "cutmix": 0.0, "smoothing": 0.0}, nn.CrossEntropyLoss),
        ("linprobe", {}, nn.CrossEntropyLoss),
    ],
)
def test_criterion_without_mixup(tmp_path, monkeypatch, stage, overrides, kind):
    spec = (ft_spec if stage == "finetune" else lp_spec)(init="none", **overrides)
    captured = built(monkeypatch, tmp_path, spec)
    assert captured["mixup"] is None and type(captured["criterion"]) is kind
    logits = torch.randn(4, 10)
    targets = torch.tensor([1, 3, 5, 7])

    class Fixed(nn.Module):
        def forward(self, images):
            return logits

    loss, _ = captured["step_fn"](Fixed(), (torch.zeros(4, 3, 16, 16), targets))
    nll = F.cross_entropy(logits, targets)
    smoothing = overrides.get("smoothing", 0.0)
    expected = (1 - smoothing) * nll + smoothing * (-F.log_softmax(logits, -1).mean(-1)).mean()
    torch.testing.assert_close(loss, expected)


def test_odd_batch_with_mixup_is_refused():
    with pytest.raises(ValueError, match="even"):
        ft_spec(batch_size=7)
    with pytest.raises(ValueError, match="even"):
        ft_spec(batch_size=7, mixup=0.0)  # cutmix alone pairs images too
    assert ft_spec(batch_size=7, mixup=0.0, cutmix=0.0).batch_size == 7
    assert lp_spec(batch_size=7).batch_size == 7


# ---- 6. checkpoint loading -------------------------------------------------------------------


def test_our_pretraining_checkpoint_loads(pretrained, pretrained_state):
    for source in (pretrained, pretrained / "checkpoint.pt"):
        state, spec = read_checkpoint(source)
        assert spec["model"] == "vit_micro" and spec["patch_size"] == 4 and spec["img_size"] == 16
        assert any(k.startswith("decoder_") for k in state) and "mask_token" in state
    model = build_classifier("vit_micro", 16, 4, 10)
    weights = encoder_weights(state, model)
    assert not any(k.startswith(DECODER_PREFIXES) for k in weights)
    assert "norm.weight" not in weights  # the avg-pool classifier has no final norm
    load_encoder(model, state)
    classifier = model.state_dict()
    block_keys = [k for k in state if k.startswith("blocks.")]
    assert len(block_keys) == MICRO.depth * 12
    for key in block_keys + ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]:
        assert torch.equal(classifier[key], state[key]), key
    # encoder_source: our checkpoint's own spec decides model and patch size, not the caller's.
    loaded, size, patch, img_size = transfer.encoder_source(
        FinetuneSpec(init=str(pretrained), model="vit_base", patch_size=16)
    )
    assert (size, patch, img_size) == ("vit_micro", 4, 16) and loaded.keys() == pretrained_state.keys()


def test_public_format_with_argparse_args_loads(tmp_path):
    torch.manual_seed(1)
    mae = build_mae("vit_micro", img_size=16, patch_size=4)
    path = tmp_path / "mae_pretrain.pth"
    torch.save({"model": mae.state_dict(), "args": argparse.Namespace(a=1), "epoch": 799}, path)
    state, spec = read_checkpoint(path)
    assert spec == {} and state.keys() == mae.state_dict().keys()
    loaded, size, patch, img_size = transfer.encoder_source(
        FinetuneSpec(init=str(path), model="vit_micro", patch_size=4)
    )
    assert (size, patch, img_size) == ("vit_micro", 4, None)
    model = build_classifier(size, 16, patch, 10)
    load_encoder(model, loaded)
    assert torch.equal(model.blocks[2].attn.qkv.weight, mae.blocks[2].attn.qkv.weight)
    # A bare OrderedDict state dict (what state_dict() returns) is fine too.
    torch.save(collections.OrderedDict(mae.state_dict()), tmp_path / "bare.pth")
    assert read_checkpoint(tmp_path / "bare.pth")[0].keys() == mae.state_dict().keys()


def sincos_at(positions_y, positions_x, dim):
    """MAE's 2-D sin-cos table evaluated at arbitrary (fractional) grid coordinates."""
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4.0))

    def encode(p):
        angles = np.outer(p.ravel(), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    rows, cols = np.meshgrid(positions_y, positions_x, indexing="ij")
    return np.concatenate([encode(cols), encode(rows)], axis=1)


def test_checkpoint_loads_at_a_larger_image_size(pretrained_state):
    model = build_classifier("vit_micro", 32, 4, 10)
    load_encoder(model, pretrained_state)
    pos = model.pos_embed.detach()
    assert pos.shape == (1, 1 + 64, MICRO.embed_dim)
    assert torch.equal(pos[:, :1], pretrained_state["pos_embed"][:, :1])
    torch.testing.assert_close(
        pretrained_state["pos_embed"][0, 1:].numpy(),
        sincos_at(np.arange(4.0), np.arange(4.0), 64).astype(np.float32),
        atol=1e-6,
        rtol=0,
    )
    # 8x8 grid over the same image: new token j sits at old coordinate j / 2 - 1 / 4.
    coordinates = np.arange(8) / 2 - 0.25
    ideal = sincos_at(coordinates, coordinates, 64).reshape(8, 8, 64)
    error = np.abs(pos[0, 1:].numpy().reshape(8, 8, 64) - ideal)
    assert error.mean() < 0.02
    assert error[1:7, 1:7].max() < 0.12
    assert torch.equal(model.blocks[0].mlp.fc1.weight, pretrained_state["blocks.0.mlp.fc1.weight"])
    model(torch.randn(2, 3, 32, 32))


def test_checkpoint_loads_with_another_patch_size(pretrained_state):
    old_kernel = pretrained_state["patch_embed.proj.weight"]
    # Patch 8 at 32 px: the same 4x4 grid, so the position table is kept; the kernel is upsampled.
    model = build_classifier("vit_micro", 32, 8, 10)
    load_encoder(model, pretrained_state)
    kernel = model.patch_embed.proj.weight.detach()
    assert kernel.shape == (MICRO.embed_dim, 3, 8, 8)
    assert torch.equal(model.pos_embed, pretrained_state["pos_embed"])
    # A flat patch gets the same embedding as before (the resampled kernel keeps <resize(x), w>).
    torch.testing.assert_close(kernel.sum(dim=(2, 3)), old_kernel.sum(dim=(2, 3)), atol=1e-4, rtol=1e-4)
    # Patch 2 at 16 px: kernel shrunk to 2x2 and the table resampled to 8x8.
    small = build_classifier("vit_micro", 16, 2, 10)
    load_encoder(small, pretrained_state)
    assert small.patch_embed.proj.weight.shape == (MICRO.embed_dim, 3, 2, 2)
    assert small.pos_embed.shape == (1, 1 + 64, MICRO.embed_dim)
    assert torch.equal(small.pos_embed[:, :1], pretrained_state["pos_embed"][:, :1])


def record_execution(marker):
    Path(marker).write_text("executed")


class Payload:
    """Unpickling this would write a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return record_execution, (self.marker,)


def test_bad_checkpoint_files_are_clear_errors(tmp_path, pretrained):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        read_checkpoint(tmp_path / "empty_run")

    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(text)

    truncated = tmp_path / "truncated.pt"
    data = (pretrained / "checkpoint.pt").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(truncated)

    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listed)
    with pytest.raises(CheckpointError, match="no state dict"):
        read_checkpoint(listed)

    not_tensors = tmp_path / "numbers.pt"
    torch.save({"model": {"pos_embed": 1.0}}, not_tensors)
    with pytest.raises(CheckpointError, match="no state dict"):
        read_checkpoint(not_tensors)

    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": Payload(str(marker))}, evil)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(evil)
    assert not marker.exists(), "the checkpoint's pickle was executed"


def test_state_dicts_that_do_not_fit_are_clear_errors(pretrained_state):
    model = build_classifier("vit_micro", 16, 4, 10)
    no_patch_embed = {k: v for k, v in pretrained_state.items() if not k.startswith("patch_embed")}
    with pytest.raises(CheckpointError, match="no encoder"):
        encoder_weights(no_patch_embed, model)
    with pytest.raises(CheckpointError, match="no encoder"):
        load_encoder(model, {"head.weight": torch.zeros(10, 64)})
    wider = build_classifier("vit_mini", 16, 4, 10)
    with pytest.raises(CheckpointError, match="--model"):
        load_encoder(wider, pretrained_state)
    missing_block = {k: v for k, v in pretrained_state.items() if not k.startswith("blocks.3.")}
    with pytest.raises(CheckpointError, match="missing"):
        load_encoder(model, missing_block)


# ---- 7. the fine-tuned weights are a timm VisionTransformer --------------------------------------


def test_finetuned_state_dict_loads_into_timm(finetuned, tmp_path):
    state = load_checkpoint(finetuned / "checkpoint.pt")["model"]
    path = tmp_path / "vit.pth"
    torch.save(state, path)
    timm_model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=10,
        img_size=16,
        patch_size=4,
        embed_dim=MICRO.embed_dim,
        depth=MICRO.depth,
        num_heads=MICRO.num_heads,
        global_pool="avg",
        checkpoint_path=str(path),
    ).eval()
    assert isinstance(timm_model, VisionTransformer)
    plain = VisionTransformer(
        img_size=16,
        patch_size=4,
        num_classes=10,
        global_pool="avg",
        embed_dim=MICRO.embed_dim,
        depth=MICRO.depth,
        num_heads=MICRO.num_heads,
    )
    plain.load_state_dict(state, strict=True)
    ours = build_classifier("vit_micro", 16, 4, 10)
    ours.load_state_dict(state, strict=True)
    for key, value in timm_model.state_dict().items():
        assert torch.equal(value, state[key]), key
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        expected = ours.eval()(images)
        torch.testing.assert_close(timm_model(images), expected, rtol=0, atol=0)
        torch.testing.assert_close(plain.eval()(images), expected, rtol=0, atol=0)
    assert expected.std().item() > 0


# ---- 8. exact resume ---------------------------------------------------------------------------


def assert_same_transfer_run(a, b):
    weights_a, weights_b = (load_checkpoint(d / "checkpoint.pt")["model"] for d in (a, b))
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()
    summary_a, summary_b = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for key in ("final", "top1", "top5", "best_top1", "best_epoch", "optimizer_steps", "history"):
        assert summary_a[key] == summary_b[key], key


@pytest.mark.slow
def test_finetune_sigterm_then_resume_equals_uninterrupted(pretrained, tmp_path, monkeypatch):
    spec = ft_spec(init=str(pretrained))
    np.random.seed(7)  # the run seeds NumPy (timm's Mixup draws from it) from spec.seed itself
    transfer.run_transfer(spec, tmp_path / "straight")

    real_factory = transfer.classification_step
    calls = {"n": 0}

    def factory(criterion, mixup):
        real_step = real_factory(criterion, mixup)

        def step(model, batch):
            calls["n"] += 1
            if calls["n"] == 3:  # mid second epoch (2 steps each), after one evaluation
                os.kill(os.getpid(), signal.SIGTERM)
            return real_step(model, batch)

        return step

    monkeypatch.setattr(transfer, "classification_step", factory)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        transfer.run_transfer(spec, tmp_path / "stopped")
    state = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["loop"]
    assert (state["epoch"], state["batches_done"]) == (1, 1)
    assert not (tmp_path / "stopped" / "summary.json").exists()
    np.random.seed(12345)  # whatever the process did in between: the checkpoint's RNG state wins
    torch.manual_seed(999)
    transfer.run_transfer(spec, tmp_path / "stopped", resume=True)
    assert calls["n"] == 3 + 1
    assert_same_transfer_run(tmp_path / "straight", tmp_path / "stopped")


def test_finetune_with_mixup_is_reproducible_from_its_seed(pretrained, tmp_path):
    spec = ft_spec(init=str(pretrained), epochs=1, warmup_epochs=0)
    np.random.seed(1)
    transfer.run_transfer(spec, tmp_path / "a")
    np.random.seed(2)
    transfer.run_transfer(spec, tmp_path / "b")
    assert_same_transfer_run(tmp_path / "a", tmp_path / "b")


# ---- 9. summary and metrics ---------------------------------------------------------------------


def test_transfer_summary_and_metrics(finetuned):
    summary = json.loads((finetuned / "summary.json").read_text())
    info = CLASSIFICATION_SETS["generated"]
    for key in (
        "top1",
        "top5",
        "best_top1",
        "best_epoch",
        "last_epoch",
        "train_images",
        "eval_images",
        "train_split",
        "eval_split",
        "stand_in_for",
    ):
        assert key in summary, key
    assert summary["stage"] == "finetune" and summary["last_epoch"] == 2
    assert summary["train_images"] == 16 and summary["eval_images"] == 500
    assert (summary["train_split"], summary["eval_split"]) == (info.train_split_name, info.eval_split_name)
    assert summary["stand_in_for"] == "flowers102"
    assert summary["model"] == "vit_micro" and summary["image_size"] == 16

    lines = [json.loads(line) for line in (finetuned / "metrics.jsonl").read_text().splitlines()]
    epochs = [line for line in lines if line["kind"] == "epoch"]
    assert [line["epoch"] for line in epochs] == [1, 2]  # epochs count from 1 wherever they are written
    assert summary["history"] == [{k: v for k, v in line.items() if k != "kind"} for line in epochs]
    assert len([line for line in lines if line["kind"] == "step"]) == 4
    for line in epochs:
        assert 0 <= line["top1"] <= line["top5"] <= 100 and line["eval_images"] == 500
    assert summary["top1"] == epochs[-1]["top1"] and summary["top5"] == epochs[-1]["top5"]
    best = max(range(2), key=lambda i: epochs[i]["top1"])
    assert summary["best_top1"] == epochs[best]["top1"] and summary["best_epoch"] == epochs[best]["epoch"] == best + 1

    # An independent count with the saved model.
    model = build_classifier("vit_micro", 16, 4, 10)
    model.load_state_dict(load_checkpoint(finetuned / "checkpoint.pt")["model"])
    model.eval()
    dataset = build_classification_dataset(
        "generated", None, "eval", eval_transform(16, info.mean, info.std, crop_pct=1.0)
    )
    correct = top5 = 0
    with torch.no_grad():
        for start in range(0, len(dataset), 256):
            items = [dataset[i] for i in range(start, min(start + 256, len(dataset)))]
            images = torch.stack([image for image, _ in items])
            labels = torch.tensor([label for _, label in items])
            logits = model(images)
            correct += int((logits.argmax(-1) == labels).sum())
            top5 += int((logits.topk(5, -1).indices == labels[:, None]).any(-1).sum())
    assert summary["top1"] == pytest.approx(100 * correct / 500, abs=1e-9)
    assert summary["top5"] == pytest.approx(100 * top5 / 500, abs=1e-9)


# ---- 10. evaluate ------------------------------------------------------------------------------


class Indexed(torch.utils.data.Dataset):
    """Item i is (tensor([i]), label i)."""

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return torch.tensor([float(index)]), self.labels[index]


class TableModel(nn.Module):
    """Returns a fixed row of logits per item index; records whether it ran in eval mode."""

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.modes = []

    def forward(self, images):
        self.modes.append(self.training)
        return self.table[images[:, 0].long()]


@pytest.mark.parametrize("batch_size", [4, 5, 13, 64])
def test_evaluate_counts_top1_and_top5(batch_size):
    # The rank (0 = highest logit) at which each item's true class sits, among 8 classes.
    ranks = [0, 1, 4, 5, 7, 0, 2, 6, 0, 3, 5, 0, 4]  # top-1: 4 items; top-5: 9 items; 13 in all
    num_classes = 8
    labels, rows = [], []
    generator = torch.Generator().manual_seed(0)
    for index, rank in enumerate(ranks):
        label = index % num_classes
        order = torch.randperm(num_classes, generator=generator).tolist()
        order.remove(label)
        order.insert(rank, label)  # order[k] gets the k-th largest logit
        row = torch.empty(num_classes)
        row[order] = torch.linspace(3.0, -2.0, num_classes)
        labels.append(label)
        rows.append(row)
    model = TableModel(torch.stack(rows)).train()
    result = evaluate(model, Indexed(labels), batch_size, torch.device("cpu"))
    assert result["eval_images"] == 13
    assert result["top1"] == pytest.approx(100 * 4 / 13)
    assert result["top5"] == pytest.approx(100 * 9 / 13)
    assert model.modes and not any(model.modes) and model.training


def test_evaluate_with_fewer_than_five_classes():
    table = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [1.0, 2.0, 0.0]])
    result = evaluate(TableModel(table), Indexed([2, 2, 0]), 2, torch.device("cpu"))
    assert result == {"top1": pytest.approx(100 / 3), "top5": 100.0, "eval_images": 3}


def test_randaugment_posterize_at_full_magnitude_does_not_crash():
    """timm's 'inc1' posterize keeps 0 bits at magnitude 10, which Pillow 13 refuses (pyproject pins it)."""
    from PIL import Image
    from timm.data.auto_augment import AugmentOp

    image = Image.new("RGB", (8, 8), (200, 100, 50))
    out = AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10)(image)
    assert out.getpixel((0, 0)) == (0, 0, 0)
