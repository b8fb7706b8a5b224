"""SupMAE and DMAE (and their NoR versions) in the MAE model: normae/core/auxiliary.py, normae/core/teacher.py."""

import math

import pytest
import torch
import torch.nn as nn

from normae.core.auxiliary import aligned_block_index, teacher_width
from normae.core.classifier import build_classifier, load_encoder
from normae.core.model import MaskedAutoencoderViT, build_mae, build_mae_from_spec
from normae.core.teacher import load_teacher
from normae.errors import CheckpointError, ConfigError

from helpers import small_spec

CLASSES = 5
BATCH, LENGTH = 6, 16  # 16 px images, patch 4: a 4x4 grid


def micro(method="mae", seed=0, **kwargs) -> MaskedAutoencoderViT:
    torch.manual_seed(seed)
    if method in ("sup_mae", "sup_nor_mae"):
        kwargs.setdefault("num_classes", CLASSES)
    if method in ("dmae", "nor_dmae"):
        kwargs.setdefault("teacher_dim", 96)
    return build_mae("vit_micro", img_size=16, patch_size=4, method=method, **kwargs)


def small_teacher(seed=1, img_size=16, patch_size=4) -> MaskedAutoencoderViT:
    """A teacher wider (96) and deeper (8 blocks: aligned block 5) than vit_micro (64, 4 blocks: block 2)."""
    torch.manual_seed(seed)
    return MaskedAutoencoderViT(
        img_size=img_size, patch_size=patch_size, embed_dim=96, depth=8, num_heads=4,
        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4,
    )  # fmt: skip


def batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    imgs = torch.randn(BATCH, 3, 16, 16, generator=generator)
    noise = torch.rand(BATCH, LENGTH, generator=generator)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    return imgs, noise, labels


def loss_and_grads(model, labels=None):
    imgs, noise, batch_labels = batch()
    model.zero_grad()
    out = model(imgs, noise, labels=batch_labels if labels else None)
    out.loss.backward()
    return out, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_step(reference, other, labels=False):
    out_a, grads_a = loss_and_grads(reference, labels)
    out_b, grads_b = loss_and_grads(other, labels)
    assert torch.equal(out_a.loss, out_b.loss)
    assert grads_a.keys() <= grads_b.keys()
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=0, atol=0, msg=name)


# ----------------------------------------------------------------------------- the weight-0 equivalences


def test_sup_mae_with_weight_zero_is_mae():
    mae, sup = micro("mae"), micro("sup_mae", sup_weight=0.0)
    assert set(sup.load_state_dict(mae.state_dict(), strict=False).missing_keys) == {
        k for k in sup.state_dict() if k.startswith("cls_head.") and not k.endswith("num_batches_tracked")
    }  # BatchNorm fills in a missing counter itself
    assert_same_step(mae, sup, labels=True)
    assert sup(*batch()[:2], labels=batch()[2]).loss_sup > 0


def test_dmae_with_alpha_zero_is_mae():
    mae, dmae = micro("mae"), micro("dmae", alpha=0.0)
    dmae.load_state_dict(mae.state_dict(), strict=False)
    dmae.attach_teacher(small_teacher())
    assert_same_step(mae, dmae)
    assert dmae(*batch()[:2]).loss_distill > 0


def test_sup_nor_mae_with_lam_zero_is_sup_mae():
    sup, sup_nor = micro("sup_mae"), micro("sup_nor_mae", seed=5, lam=0.0)
    sup_nor.load_state_dict(sup.state_dict(), strict=True)
    assert_same_step(sup, sup_nor, labels=True)
    out = sup_nor(*batch()[:2], labels=batch()[2])
    assert out.loss_nor != 0 and out.pred_cnp is not None


def test_nor_dmae_with_lam_zero_is_dmae():
    dmae, nor_dmae = micro("dmae"), micro("nor_dmae", seed=5, lam=0.0)
    nor_dmae.load_state_dict(dmae.state_dict(), strict=True)
    teacher = small_teacher()
    dmae.attach_teacher(teacher)
    nor_dmae.attach_teacher(teacher)
    assert_same_step(dmae, nor_dmae)
    assert nor_dmae(*batch()[:2]).loss_nor != 0


def test_mae_reports_zero_auxiliary_losses():
    out = micro("mae")(*batch()[:2])
    assert out.loss_sup == 0 and out.loss_distill == 0 and out.loss_nor == 0


# ----------------------------------------------------------------------------- slow references


def visible(tokens, noise):
    """The kept tokens, sample by sample: the quarter of positions with the lowest noise."""
    keep = int(LENGTH * 0.25)
    ids_keep = [torch.argsort(row)[:keep] for row in noise]
    return torch.stack([tokens[n, ids] for n, ids in enumerate(ids_keep)])


def with_cls(model, kept):
    cls = (model.cls_token + model.pos_embed[:, :1]).expand(kept.shape[0], -1, -1)
    return torch.cat([cls, kept], dim=1)


@pytest.mark.parametrize("hidden", [32, 0])
def test_supervised_loss_against_a_slow_reference(hidden):
    model = micro("sup_mae", sup_hidden=hidden, sup_weight=0.3)
    imgs, noise, labels = batch()
    out = model(imgs, noise, labels=labels)
    with torch.no_grad():
        x = with_cls(model, visible(model.patch_embed(imgs) + model.pos_embed[:, 1:], noise))
        for block in model.blocks:
            x = block(x)
        pooled = model.norm(x)[:, 1:].sum(dim=1) / 4  # the 4 visible patches, cls excluded
        head = model.cls_head
        if hidden:
            h = pooled @ head[0].weight.T + head[0].bias
            h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + head[1].eps) * head[1].weight + head[1].bias
            logits = torch.clamp(h, min=0) @ head[3].weight.T + head[3].bias
        else:
            logits = pooled @ head[0].weight.T + head[0].bias
        scaled = logits / 10.0
        ce = sum(torch.logsumexp(scaled[n], 0) - scaled[n, labels[n]] for n in range(BATCH)) / BATCH
    torch.testing.assert_close(out.loss_sup, ce, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss, out.loss_rec + 0.3 * out.loss_sup)


def test_distillation_loss_against_a_slow_reference():
    student, teacher = micro("dmae", alpha=0.7), small_teacher()
    student.attach_teacher(teacher)
    assert (student.student_block, student.teacher_block) == (2, 5)  # round(4 x 0.75) - 1, round(8 x 0.75) - 1
    ran = []
    for index, block in enumerate(teacher.blocks):
        block.register_forward_hook(lambda module, args, output, index=index: ran.append(index))
    imgs, noise, _ = batch()
    out = student(imgs, noise)
    assert ran == [0, 1, 2, 3, 4, 5]  # the teacher stops after its aligned block
    with torch.no_grad():
        s = with_cls(student, visible(student.embed(imgs), noise))
        for block in student.blocks[:3]:
            s = block(s)
        t = with_cls(teacher, visible(teacher.patch_embed(imgs) + teacher.pos_embed[:, 1:], noise))
        for block in teacher.blocks[:6]:
            t = block(t)
        projection = student.aligned_feature_projection_heads[0]
        total = 0.0
        for n in range(BATCH):
            for token in range(5):  # cls + 4 visible patches
                a = t[n, token] / t[n, token].norm()
                b = projection(s[n, token])
                total += (a - b / b.norm()).abs().sum()
        reference = total / (BATCH * 5 * 96)
    torch.testing.assert_close(out.loss_distill, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss, out.loss_rec + 0.7 * out.loss_distill)
    # another mask changes the teacher's visible patches, hence the loss
    assert not torch.allclose(student(imgs, torch.rand(BATCH, LENGTH)).loss_distill, out.loss_distill)


def test_aligned_block_index():
    assert aligned_block_index(12, 0.75) == 8 and aligned_block_index(24, 0.75) == 17
    assert aligned_block_index(12, 1.0) == 11
    with pytest.raises(ConfigError, match="distill_depth"):
        aligned_block_index(4, 0.1)
    assert teacher_width(None, "vit_large") == 1024


# ----------------------------------------------------------------------------- the frozen teacher


def test_teacher_is_frozen_and_outside_the_student():
    student, teacher = micro("dmae"), small_teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student.attach_teacher(teacher)
    assert student.teacher is teacher
    assert set(student.state_dict()) == set(micro("mae").state_dict()) | {
        "aligned_feature_projection_heads.0.weight",
        "aligned_feature_projection_heads.0.bias",
    }
    assert {id(p) for p in student.parameters()}.isdisjoint(id(p) for p in teacher.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())
    student.train()
    assert student.training and not any(m.training for m in teacher.modules())
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    projection = student.aligned_feature_projection_heads[0].weight.clone()
    student(*batch()[:2]).loss.backward()
    optimizer.step()
    assert not torch.equal(projection, student.aligned_feature_projection_heads[0].weight)
    assert all(p.grad is None for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    student.to(torch.float64)  # what .to(device) runs reaches the teacher too
    assert teacher.pos_embed.dtype == torch.float64 and student.teacher is teacher


def test_a_teacher_that_does_not_fit_is_refused():
    with pytest.raises(ConfigError, match=r"teacher \(patch 2.*student \(patch 4"):
        micro("dmae").attach_teacher(small_teacher(patch_size=2))
    with pytest.raises(ConfigError, match=r"grid \(5, 5\)"):
        micro("dmae").attach_teacher(small_teacher(img_size=20))
    with pytest.raises(ConfigError, match="built for 128"):
        micro("dmae", teacher_dim=128).attach_teacher(small_teacher())
    with pytest.raises(ConfigError, match="takes no teacher"):
        micro("mae").attach_teacher(small_teacher())
    with pytest.raises(ConfigError, match="needs a teacher"):
        micro("dmae")(*batch()[:2])


def test_load_teacher_reads_public_and_own_checkpoints(tmp_path):
    source = build_mae("vit_mini", img_size=16, patch_size=4)
    public = tmp_path / "mae_pretrain.pth"  # MAE's released pre-training files hold the encoder only
    torch.save({"model": source.encoder_state_dict()}, public)
    teacher = load_teacher(public, "vit_mini", 16, 4)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for key, value in source.encoder_state_dict().items():
        assert torch.equal(teacher.state_dict()[key], value), key
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": source.state_dict(), "spec": {"model": "vit_mini"}, "loop": {}}, run / "checkpoint.pt")
    assert torch.equal(load_teacher(run, "vit_mini", 16, 4).blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    student = micro("dmae", teacher_dim=128)
    student.attach_teacher(load_teacher(run / "checkpoint.pt", "vit_mini", 16, 4))
    assert student.teacher_block == 3  # round(6 x 0.75) - 1, Python's round


def one_line_error(kind, match, call):
    with pytest.raises(kind, match=match) as error:
        call()
    assert "\n" not in str(error.value)
    return str(error.value)


def test_load_teacher_errors_name_the_file_and_the_option(tmp_path):
    source = build_mae("vit_mini", img_size=16, patch_size=4)
    missing = tmp_path / "absent.pth"
    one_line_error(
        CheckpointError, f"--teacher {missing}.*does not exist", lambda: load_teacher(missing, "vit_mini", 16, 4)
    )
    not_a_dict = tmp_path / "list.pth"
    torch.save([1, 2], not_a_dict)
    one_line_error(CheckpointError, "--teacher .*list.pth", lambda: load_teacher(not_a_dict, "vit_mini", 16, 4))
    partial = tmp_path / "partial.pth"
    state = source.state_dict()
    del state["blocks.3.attn.qkv.weight"]
    torch.save({"model": state}, partial)
    one_line_error(CheckpointError, "--teacher .*partial.pth lacks 1 encoder keys.*blocks.3.attn.qkv.weight",
                   lambda: load_teacher(partial, "vit_mini", 16, 4))  # fmt: skip
    full = tmp_path / "full.pth"
    torch.save({"model": source.state_dict()}, full)
    one_line_error(ConfigError, "--teacher .*full.pth does not fit --teacher-model vit_micro",
                   lambda: load_teacher(full, "vit_micro", 16, 4))  # fmt: skip
    one_line_error(ConfigError, "patch_embed.proj.weight", lambda: load_teacher(full, "vit_mini", 16, 2))
    one_line_error(ConfigError, "--teacher-model vit_huge", lambda: load_teacher(full, "vit_huge", 16, 4))
    own = tmp_path / "own.pt"
    torch.save({"model": source.state_dict(), "spec": {"model": "vit_mini"}}, own)
    one_line_error(ConfigError, "is a vit_mini run but --teacher-model is vit_micro",
                   lambda: load_teacher(own, "vit_micro", 16, 4))  # fmt: skip


# ----------------------------------------------------------------------------- names, init, fine-tuning


def test_parameter_names_are_mae_plus_the_public_codes():
    mae = set(micro("mae").state_dict())
    bn = {f"cls_head.1.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    linears = {f"cls_head.{i}.{k}" for i in (0, 3) for k in ("weight", "bias")}
    assert set(micro("sup_mae").state_dict()) == mae | bn | linears
    assert set(micro("sup_mae", sup_hidden=0).state_dict()) == mae | {"cls_head.0.weight", "cls_head.0.bias"}
    projection = {"aligned_feature_projection_heads.0.weight", "aligned_feature_projection_heads.0.bias"}
    assert set(micro("nor_dmae").state_dict()) == mae | projection
    assert micro("sup_mae").cls_head[0].weight.shape == (3072, 64)  # SupMAE's hidden width by default


def test_head_init_is_xavier_and_projection_init_is_pytorchs():
    sup, dmae = micro("sup_mae", sup_hidden=48), micro("dmae")
    for linear in (sup.cls_head[0], sup.cls_head[3]):
        bound = math.sqrt(6.0 / (linear.in_features + linear.out_features))
        assert linear.weight.abs().max() <= bound + 1e-7 and linear.weight.abs().max() > 0.8 * bound
        assert torch.equal(linear.bias, torch.zeros_like(linear.bias))
    assert isinstance(sup.cls_head[1], nn.BatchNorm1d) and torch.equal(sup.cls_head[1].weight, torch.ones(48))
    projection = dmae.aligned_feature_projection_heads[0]
    assert projection.weight.abs().max() <= 1 / math.sqrt(64) and projection.bias.abs().sum() > 0  # kaiming default


@pytest.mark.parametrize("method", ["sup_mae", "sup_nor_mae", "dmae", "nor_dmae"])
def test_encoder_loads_into_the_classifier(method):
    model = micro(method)
    assert not any(k.startswith(("cls_head.", "aligned_feature")) for k in model.encoder_state_dict())
    classifier = build_classifier("vit_micro", img_size=16, patch_size=4, num_classes=10)
    load_encoder(classifier, model.state_dict())
    assert torch.equal(classifier.blocks[1].mlp.fc2.weight, model.blocks[1].mlp.fc2.weight)


# ----------------------------------------------------------------------------- configuration errors


def test_supervised_method_without_labels_is_a_one_line_error():
    model = micro("sup_mae")
    message = one_line_error(ConfigError, "needs labels", lambda: model(*batch()[:2]))
    assert message == "method sup_mae needs labels: the pre-training set returns none"
    one_line_error(ConfigError, "sup_nor_mae needs num_classes", lambda: micro("sup_nor_mae", num_classes=None))
    one_line_error(ConfigError, "dmae needs teacher_dim", lambda: micro("dmae", teacher_dim=None))


def test_build_mae_from_spec_passes_the_new_fields():
    spec = small_spec(method="sup_nor_mae", sup_weight=0.2, sup_temperature=5.0, sup_hidden=16, lam=1e-3)
    model = build_mae_from_spec(spec, 16, num_classes=7)
    assert (model.sup_weight, model.sup_temperature, model.lam) == (0.2, 5.0, 1e-3)
    assert model.cls_head[3].out_features == 7 and model.cls_head[0].out_features == 16
    spec = small_spec(method="dmae", teacher="t.pth", teacher_model="vit_mini", alpha=0.5, distill_depth=0.5)
    unattached = build_mae_from_spec(spec, 16)
    assert unattached.aligned_feature_projection_heads[0].out_features == 128 and unattached.teacher is None
    teacher = small_teacher()
    model = build_mae_from_spec(spec, 16, teacher=teacher)
    assert model.teacher is teacher and model.alpha == 0.5
    assert (model.student_block, model.teacher_block) == (1, 3)  # round(4 x 0.5) - 1, round(8 x 0.5) - 1
    assert model.aligned_feature_projection_heads[0].out_features == 96
    with pytest.raises(ConfigError, match="--teacher-model 'vit_huge'"):
        build_mae_from_spec(small_spec(method="dmae", teacher="t.pth", teacher_model="vit_huge"), 16)
