"""The ADE20K segmentation model side: ViTUperNet's shapes, loss, parameter groups and checkpoint loading,
the confusion-matrix metrics against a hand-computed example and torchmetrics, and sliding-window inference."""

import pytest
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.optim import param_groups_layer_decay
from torchmetrics.classification import MulticlassJaccardIndex

from normae.core.classifier import build_classifier
from normae.core.model import build_mae
from normae.core.seg_eval import evaluate_segmentation, slide_inference
from normae.core.seg_metrics import ConfusionMatrix
from normae.core.segmenter import ViTUperNet, load_pretrained, param_groups, pyramid_block_indices, segmentation_loss
from normae.errors import CheckpointError, ConfigError
from normae.model_sizes import MODEL_SIZES

SMALL = dict(decoder_channels=16, aux_channels=8)  # decoder widths that keep the CPU tests fast


def small_segmenter(num_classes=5, img_size=32, patch_size=4, size="vit_micro"):
    torch.manual_seed(0)
    return ViTUperNet(size, img_size, patch_size, num_classes, **SMALL)


# ---------------------------------------------------------------- the network


@torch.no_grad()
def test_vit_tiny_at_512_gives_strides_4_8_16_32_and_full_size_logits():
    model = ViTUperNet("vit_tiny", 512, 16, 7, **SMALL).eval()
    decoder_inputs = []  # the levels as the decoder gets them: one forward, the encoder at 1024 tokens is slow
    model.decoder.register_forward_pre_hook(lambda module, inputs: decoder_inputs.extend(inputs[0][2:]))
    main, aux = model(torch.randn(1, 3, 512, 512))
    assert [tuple(level.shape) for level in decoder_inputs] == [(1, 192, side, side) for side in (128, 64, 32, 16)]
    assert main.shape == aux.shape == (1, 7, 512, 512)


@torch.no_grad()
def test_small_patch_pyramid_is_token_relative_and_takes_any_multiple_of_the_patch():
    model = small_segmenter(img_size=56).eval()
    levels = model.pyramid_levels(torch.randn(2, 3, 56, 56))  # 14 x 14 tokens
    assert [level.shape[-1] for level in levels] == [56, 28, 14, 7]
    aux_inputs = []
    model.aux_head.register_forward_pre_hook(lambda module, inputs: aux_inputs.append(inputs[0].shape))
    model(torch.randn(1, 3, 56, 56))
    assert aux_inputs == [(1, 64, 14, 14)]  # BEiT's FCN head: the third level, stride 16 at patch 16
    main, aux = model(torch.randn(2, 3, 40, 48))  # not the built size: the encoder resamples its grid
    assert main.shape == aux.shape == (2, 5, 40, 48)
    with pytest.raises(ConfigError, match="multiple of patch size 4"):
        model(torch.randn(1, 3, 42, 48))


def test_pyramid_blocks_are_beit_s_for_12_and_24_and_quarter_ends_otherwise():
    assert pyramid_block_indices(12) == (3, 5, 7, 11)
    assert pyramid_block_indices(24) == (7, 11, 15, 23)
    assert pyramid_block_indices(4) == (0, 1, 2, 3)
    assert pyramid_block_indices(6) == (0, 2, 3, 5)
    assert pyramid_block_indices(8) == (1, 3, 5, 7)
    assert pyramid_block_indices(2) == (0, 0, 0, 1)  # fewer blocks than levels: levels share blocks
    assert small_segmenter(size="vit_mini").out_indices == (0, 2, 3, 5)
    assert ViTUperNet("vit_tiny", 32, 16, 3, **SMALL).out_indices == (3, 5, 7, 11)


def test_encoder_is_the_classifier_s_vit_without_its_norms_and_head():
    model = small_segmenter()
    classifier = build_classifier("vit_micro", 32, 4, num_classes=5)
    expected = {k: v.shape for k, v in classifier.state_dict().items() if not k.startswith(("head.", "fc_norm."))}
    assert {k: v.shape for k, v in model.encoder.state_dict().items()} == expected
    assert len(model.encoder.blocks) == MODEL_SIZES["vit_micro"].depth


# ---------------------------------------------------------------- pre-trained weights


def test_mae_encoder_loads_with_the_position_embedding_resampled_to_32x32():
    torch.manual_seed(0)
    state = build_mae("vit_tiny", img_size=224, patch_size=16).state_dict()
    model = ViTUperNet("vit_tiny", 512, 16, 150, **SMALL)
    load_pretrained(model, state, "mae.pt")
    encoder = model.encoder.state_dict()
    assert encoder["pos_embed"].shape == (1, 1 + 32 * 32, 192)
    assert torch.equal(encoder["pos_embed"], resample_abs_pos_embed(state["pos_embed"], [32, 32], num_prefix_tokens=1))
    assert torch.equal(encoder["pos_embed"][:, 0], state["pos_embed"][:, 0])
    for name in ("cls_token", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.bias"):
        assert torch.equal(encoder[name], state[name]), name


def test_a_state_without_encoder_names_the_file_and_what_is_missing():
    state = {k: v for k, v in build_mae("vit_micro", img_size=32, patch_size=4).state_dict().items() if "decoder" in k}
    with pytest.raises(CheckpointError, match=r"decoder_only\.pt .*patch_embed\.proj\.weight") as raised:
        load_pretrained(small_segmenter(), state, "decoder_only.pt")
    assert "\n" not in str(raised.value)


# ---------------------------------------------------------------- optimisation


def test_param_groups_hold_every_parameter_once_with_beit_s_layer_decay():
    model, decay = small_segmenter(), 0.65
    depth = len(model.encoder.blocks)
    groups = param_groups(model, 0.05, decay)
    group_of = {}
    for group in groups:
        for parameter in group["params"]:
            assert id(parameter) not in group_of, "a parameter is in two groups"
            group_of[id(parameter)] = group
    named = dict(model.named_parameters())
    assert set(group_of) == {id(p) for p in named.values()}
    timm_groups = param_groups_layer_decay(model.encoder, 0.05, model.encoder.no_weight_decay(), layer_decay=decay)
    for timm_group in timm_groups:  # the encoder: timm's groups, one layer further below the decoder
        for parameter in timm_group["params"]:
            assert group_of[id(parameter)]["lr_scale"] == pytest.approx(timm_group["lr_scale"] * decay)
            assert group_of[id(parameter)]["weight_decay"] == timm_group["weight_decay"]
    scale = {name: group_of[id(p)]["lr_scale"] for name, p in named.items()}
    assert scale["encoder.blocks.0.attn.qkv.weight"] == pytest.approx(decay**depth)
    assert scale[f"encoder.blocks.{depth - 1}.attn.qkv.weight"] == pytest.approx(decay)
    assert scale["encoder.patch_embed.proj.weight"] == scale["encoder.pos_embed"] == pytest.approx(decay ** (depth + 1))
    for name, parameter in named.items():
        if not name.startswith("encoder."):
            assert scale[name] == 1.0, name
            assert group_of[id(parameter)]["weight_decay"] == (0.05 if parameter.ndim >= 2 else 0.0), name
    assert group_of[id(named["encoder.pos_embed"])]["weight_decay"] == 0.0


def test_loss_ignores_255_and_weights_the_auxiliary_head_by_0_4():
    torch.manual_seed(0)
    main, aux = torch.randn(1, 4, 3, 3, requires_grad=True), torch.randn(1, 4, 3, 3)
    target = torch.full((1, 3, 3), 255)
    target[0, 1, 2] = 2
    loss, metrics = segmentation_loss((main, aux), target)
    expected_main = F.cross_entropy(main[:, :, 1, 2], torch.tensor([2]))
    expected_aux = F.cross_entropy(aux[:, :, 1, 2], torch.tensor([2]))
    assert metrics["loss_main"] == pytest.approx(expected_main.item())
    assert metrics["loss_aux"] == pytest.approx(expected_aux.item())
    assert loss.item() == pytest.approx(expected_main.item() + 0.4 * expected_aux.item())
    assert all(v.ndim == 0 and not v.requires_grad for v in metrics.values())
    unlabelled, _ = segmentation_loss((main, aux), torch.full((1, 3, 3), 255))
    assert unlabelled.item() == 0.0  # finite: the loop stops on a non-finite loss


def test_one_training_step_gives_finite_loss_and_a_gradient_to_every_parameter():
    model = small_segmenter().train()
    optimizer = torch.optim.AdamW(param_groups(model, 0.05, 0.65), lr=1e-3)
    images = torch.randn(2, 3, 32, 32)
    target = torch.randint(0, 5, (2, 32, 32))
    target[:, :4] = 255
    loss, _ = segmentation_loss(model(images), target)
    loss.backward()
    assert torch.isfinite(loss)
    unused = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert unused == []
    optimizer.step()


# ---------------------------------------------------------------- metrics


def test_confusion_matrix_metrics_match_a_hand_computed_example():
    # Class 3 is in neither target nor prediction (the prediction 3 is on an ignored pixel): NaN, out of the means.
    target = torch.tensor([[0, 0, 0, 1], [1, 2, 255, 255]])
    pred = torch.tensor([[0, 0, 1, 1], [2, 2, 0, 3]])
    matrix = ConfusionMatrix(4)
    matrix.update(pred, target)
    # rows = target: class 0 -> predicted 0, 0, 1; class 1 -> 1, 2; class 2 -> 2.
    assert matrix.matrix.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    result = matrix.compute()
    # IoU: 2 / (3 + 2 - 2), 1 / (2 + 2 - 1), 1 / (1 + 2 - 1); accuracy: 2 / 3, 1 / 2, 1 / 1.
    assert result["per_class_iou"][:3] == pytest.approx([200 / 3, 100 / 3, 50.0])
    assert result["per_class_iou"][3] is None
    assert result["miou"] == pytest.approx(50.0)
    assert result["pixel_accuracy"] == pytest.approx(400 / 6)
    assert result["mean_accuracy"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 1) / 3)
    assert result["pixels"] == 6


def test_confusion_matrix_rejects_a_label_outside_the_classes():
    matrix = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="target value 7 is outside"):
        matrix.update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="target value -1"):
        matrix.update(torch.tensor([0, 1]), torch.tensor([-1, 1]))
    assert matrix.matrix.sum() == 0


def test_confusion_matrix_iou_equals_torchmetrics_when_every_class_is_present():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 6, (4, 20, 20), generator=generator)
    target[:, :3] = 255
    pred = torch.where(torch.rand(target.shape, generator=generator) < 0.5, target.clamp(max=5), 0)
    pred = torch.where(torch.rand(target.shape, generator=generator) < 0.3, torch.randint(0, 6, target.shape), pred)
    matrix = ConfusionMatrix(6)
    for image in range(4):
        matrix.update(pred[image], target[image])
    reference = MulticlassJaccardIndex(6, average=None, ignore_index=255)(pred, target)
    assert matrix.compute()["per_class_iou"] == pytest.approx((100 * reference).tolist())
    assert matrix.compute()["miou"] == pytest.approx(100 * reference.mean().item())


# ---------------------------------------------------------------- inference


@torch.no_grad()
def test_slide_inference_on_an_image_of_the_crop_is_one_forward():
    model = small_segmenter().eval()
    images = torch.randn(2, 3, 32, 32)
    assert torch.allclose(slide_inference(model, images, 5, crop=32, stride=16), model(images)[0], atol=1e-6)


@torch.no_grad()
def test_slide_inference_averages_the_windows_as_mmseg():
    model = small_segmenter().eval()
    images = torch.randn(1, 3, 40, 56)
    crop, stride = 32, 12
    summed, count = torch.zeros(1, 5, 40, 56), torch.zeros(40, 56)
    tops = list(range(0, 40 - crop, stride)) + [40 - crop]  # 0, 8
    lefts = list(range(0, 56 - crop, stride)) + [56 - crop]  # 0, 12, 24
    for top in tops:
        for left in lefts:
            summed[..., top : top + crop, left : left + crop] += model(
                images[..., top : top + crop, left : left + crop]
            )[0]
            count[top : top + crop, left : left + crop] += 1
    assert count.min() >= 1
    assert torch.allclose(slide_inference(model, images, 5, crop, stride), summed / count, atol=1e-6)


@torch.no_grad()
def test_slide_inference_pads_an_image_smaller_than_the_crop():
    model = small_segmenter().eval()
    images = torch.randn(1, 3, 18, 27)  # smaller than the crop, and not a multiple of the patch
    logits = slide_inference(model, images, 5, crop=32, stride=16)
    assert logits.shape == (1, 5, 18, 27)
    expected = model(F.pad(images, (0, 32 - 27, 0, 32 - 18)))[0][..., :18, :27]
    assert torch.allclose(logits, expected, atol=1e-6)


class MixedSizes(torch.utils.data.Dataset):
    """Three images of different sizes with masks holding ignored pixels."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.items = []
        for height, width in ((32, 40), (24, 24), (44, 32)):
            mask = torch.randint(0, 5, (height, width), generator=generator)
            mask[0] = 255
            self.items.append((torch.randn(3, height, width, generator=generator), mask))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_evaluate_segmentation_counts_every_image_and_restores_train_mode():
    model, dataset = small_segmenter().train(), MixedSizes()
    result = evaluate_segmentation(model, dataset, torch.device("cpu"), 5, crop=32, stride=16)
    assert model.training
    model.eval()
    matrix = ConfusionMatrix(5)
    with torch.no_grad():
        for image, mask in dataset:
            matrix.update(slide_inference(model, image[None], 5, 32, 16).argmax(dim=1)[0], mask)
    assert result == {**matrix.compute(), "eval_images": 3}
    assert result["pixels"] == sum(int((mask != 255).sum()) for _, mask in dataset)
