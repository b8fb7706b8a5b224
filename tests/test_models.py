"""ViT MAE / NoR-MAE model (normae/models.py)."""

import io
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from normae.core.cnp import authors_code_source_index, cnp_source_index
from normae.core.losses import nor_loss, reconstruction_loss
from normae.core.model import MODEL_SIZES, MaskedAutoencoderViT, build_mae, random_masking, sincos_pos_embed

OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def tiny_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    options = dict(
        img_size=16,
        patch_size=4,
        embed_dim=32,
        depth=2,
        num_heads=4,
        decoder_embed_dim=24,
        decoder_depth=2,
        decoder_num_heads=4,
    )
    options.update(kwargs)
    return MaskedAutoencoderViT(**options)


# ----------------------------------------------------------------------------- sincos_pos_embed


def mae_reference_table(embed_dim, size):
    """Independent re-derivation of the MAE reference (square grid, cls row of zeros)."""
    grid_h = np.arange(size, dtype=np.float64)
    grid_w = np.arange(size, dtype=np.float64)
    gw, gh = np.meshgrid(grid_w, grid_h)  # 'xy' indexing: first array varies along columns

    def one_d(dim, pos):
        omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
        omega = 1.0 / 10000**omega
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one_d(embed_dim // 2, gw), one_d(embed_dim // 2, gh)], axis=1)
    return np.concatenate([np.zeros((1, embed_dim)), emb], axis=0)


@pytest.mark.parametrize("dim, size", [(16, 4), (64, 14), (192, 14), (8, 3)])
def test_sincos_matches_mae_reference(dim, size):
    table = sincos_pos_embed(dim, (size, size))
    assert table.shape == (1 + size * size, dim)
    assert np.all(table[0] == 0)
    np.testing.assert_allclose(table, mae_reference_table(dim, size), rtol=0, atol=1e-12)


def test_sincos_without_cls_row():
    table = sincos_pos_embed(16, (3, 5), cls_token=False)
    assert table.shape == (15, 16)
    np.testing.assert_array_equal(table, sincos_pos_embed(16, (3, 5))[1:])


@pytest.mark.parametrize("grid", [(3, 5), (5, 2), (1, 4)])
def test_sincos_non_square_halves(grid):
    dim = 16
    height, width = grid
    table = sincos_pos_embed(dim, grid)[1:]
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter) / quarter)
    for l in range(height * width):
        r, c = divmod(l, width)
        np.testing.assert_allclose(table[l, :quarter], np.sin(c * omega), atol=1e-12)
        np.testing.assert_allclose(table[l, quarter : 2 * quarter], np.cos(c * omega), atol=1e-12)
        np.testing.assert_allclose(table[l, 2 * quarter : 3 * quarter], np.sin(r * omega), atol=1e-12)
        np.testing.assert_allclose(table[l, 3 * quarter :], np.cos(r * omega), atol=1e-12)
    # first half is constant down a column, second half constant along a row
    grid_table = table.reshape(height, width, dim)
    assert np.allclose(grid_table[:, :, : dim // 2], grid_table[:1, :, : dim // 2])
    assert np.allclose(grid_table[:, :, dim // 2 :], grid_table[:, :1, dim // 2 :])


@pytest.mark.parametrize("dim", [6, 10, 30, 3])
def test_sincos_rejects_dim_not_divisible_by_four(dim):
    with pytest.raises(ValueError):
        sincos_pos_embed(dim, (4, 4))


# ----------------------------------------------------------------------------- random_masking


@pytest.mark.parametrize("length, ratio", [(16, 0.75), (10, 0.5), (49, 0.75), (8, 0.0), (12, 0.9)])
def test_random_masking_keeps_lowest_noise(length, ratio):
    g = torch.Generator().manual_seed(length)
    tokens = torch.randn(3, length, 5, generator=g)
    noise = torch.rand(3, length, generator=g)
    kept, mask, ids_restore, ids_keep = random_masking(tokens, ratio, noise)
    keep = int(length * (1 - ratio))
    assert kept.shape == (3, keep, 5)
    assert mask.shape == (3, length) and ids_restore.shape == (3, length) and ids_keep.shape == (3, keep)
    order = torch.argsort(noise, dim=1)
    assert torch.equal(ids_keep, order[:, :keep])
    assert torch.equal(kept, torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, 5)))
    # mask: 1 = removed, exactly the positions not kept
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(mask.sum(1), torch.full((3,), float(length - keep)))
    for n in range(3):
        kept_set = set(ids_keep[n].tolist())
        assert kept_set == {l for l in range(length) if mask[n, l] == 0}
        threshold = noise[n].sort().values[keep - 1] if keep else -1.0
        assert all((noise[n, l] <= threshold) == (l in kept_set) for l in range(length))
    # ids_restore undoes the shuffle
    shuffled = torch.gather(tokens, 1, order[..., None].expand(-1, -1, 5))
    assert torch.equal(torch.gather(shuffled, 1, ids_restore[..., None].expand(-1, -1, 5)), tokens)
    assert torch.equal(torch.gather(order, 1, ids_restore), torch.arange(length).expand(3, -1))


def test_random_masking_same_noise_same_mask():
    tokens = torch.randn(2, 20, 4)
    noise = torch.rand(2, 20)
    a = random_masking(tokens, 0.75, noise)
    b = random_masking(tokens, 0.75, noise.clone())
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    c = random_masking(tokens, 0.75, torch.rand(2, 20))
    assert not torch.equal(a[1], c[1])


def test_random_masking_without_noise_uses_torch_rng():
    tokens = torch.randn(2, 20, 4)
    torch.manual_seed(3)
    a = random_masking(tokens, 0.75)
    torch.manual_seed(3)
    b = random_masking(tokens, 0.75)
    assert torch.equal(a[1], b[1])
    assert a[0].shape == (2, 5, 4)


@pytest.mark.parametrize("shape", [(2, 19), (1, 20), (2, 20, 1), (20,)])
def test_random_masking_wrong_noise_shape(shape):
    with pytest.raises(ValueError):
        random_masking(torch.randn(2, 20, 4), 0.75, torch.rand(*shape))


# ----------------------------------------------------------------------------- forward, patchify


@pytest.mark.parametrize("method", ["mae", "nor_mae"])
def test_forward_shapes(method):
    model = tiny_model(img_size=(24, 16), method=method)
    imgs = torch.randn(2, 3, 24, 16)
    out = model(imgs)
    assert model.grid == (6, 4)
    assert out.pred.shape == (2, 24, 4 * 4 * 3)
    assert out.mask.shape == (2, 24)
    assert torch.equal(out.mask.sum(1), torch.full((2,), 24.0 - int(24 * 0.25)))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    if method == "mae":
        assert out.loss_nor.item() == 0.0
    else:
        assert out.loss_nor.item() != 0.0


def test_patchify_unpatchify_round_trip_non_square():
    model = tiny_model(img_size=(24, 16))
    imgs = torch.randn(2, 3, 24, 16)
    patches = model.patchify(imgs)
    assert patches.shape == (2, 24, 48)
    assert torch.equal(model.unpatchify(patches), imgs)
    # row-major token order, (row, column, channel) order inside a patch
    p = 4
    for l in (0, 3, 4, 13, 23):
        r, c = divmod(l, 4)
        block = imgs[:, :, r * p : (r + 1) * p, c * p : (c + 1) * p]
        assert torch.equal(patches[:, l], block.permute(0, 2, 3, 1).reshape(2, -1))


def test_patch_size_not_dividing_image_raises_with_valid_sizes():
    with pytest.raises(ValueError) as info:
        tiny_model(img_size=(24, 16), patch_size=5)
    assert "[1, 2, 4, 8]" in str(info.value)
    with pytest.raises(ValueError, match=r"\[1, 2, 4, 8, 16, 32\]"):
        build_mae("vit_micro", img_size=32, patch_size=6)


# ----------------------------------------------------------------------------- NoR-MAE vs MAE


def pair(lam, seed=0, **kwargs):
    mae = tiny_model(seed=seed, method="mae", **kwargs)
    nor = tiny_model(seed=seed + 1, method="nor_mae", lam=lam, **kwargs)
    nor.load_state_dict(mae.state_dict())
    return mae, nor


def test_lambda_zero_equals_mae_exactly():
    mae, nor = pair(lam=0.0)
    imgs = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(2))
    a, b = mae(imgs, noise), nor(imgs, noise)
    assert torch.equal(a.loss, b.loss)
    assert torch.equal(a.pred, b.pred)
    assert torch.equal(a.mask, b.mask)
    assert b.loss_nor.item() != 0.0  # the branch did run


@pytest.mark.parametrize("variant", ["offdiag", "diag", "token"])
def test_loss_is_rec_plus_lambda_nor(variant):
    mae, nor = pair(lam=0.3, nor_variant=variant)
    imgs = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(2))
    out = nor(imgs, noise)
    assert torch.allclose(out.loss, out.loss_rec + 0.3 * out.loss_nor, rtol=1e-6, atol=0)
    assert torch.equal(out.loss_rec, mae(imgs, noise).loss)
    assert not torch.allclose(out.loss, out.loss_rec)


def manual_nor_loss(model, imgs, noise, detach=True):
    tokens = model.embed(imgs)
    kept, mask, ids_restore, ids_keep = random_masking(tokens, model.mask_ratio, noise)
    pred = model.decode(model.encode(kept), ids_restore)
    loss_rec = reconstruction_loss(pred, model.patchify(imgs), mask, norm_pix=model.norm_pix_loss)
    source = cnp_source_index(tokens.detach(), model.grid, mode=model.cnp, wrap=model.cnp_wrap)
    kept_source = torch.gather(source, 1, ids_keep)
    cnp_tokens = torch.gather(tokens, 1, kept_source[..., None].expand(-1, -1, tokens.shape[-1]))
    pred_cnp = model.decode(model.encode(cnp_tokens), ids_restore)
    if detach:
        pred_cnp = pred_cnp.detach()
    via_model = model.cnp_prediction(tokens, ids_keep, ids_restore)
    assert via_model.requires_grad is False
    assert torch.allclose(via_model, pred_cnp, rtol=1e-5, atol=1e-6)
    return loss_rec + model.lam * nor_loss(pred, pred_cnp, model.nor_variant, standardize=model.norm_pix_loss)


def grads_of(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_stop_gradient_on_cnp_branch():
    model = tiny_model(method="nor_mae", lam=1.0)  # a large lambda makes the branch visible in the grads
    imgs = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(2))
    got = grads_of(model, model(imgs, noise).loss)
    want = grads_of(model, manual_nor_loss(model, imgs, noise, detach=True))
    without_stop = grads_of(model, manual_nor_loss(model, imgs, noise, detach=False))
    assert got.keys() == want.keys()
    assert "pos_embed" not in got and "decoder_pos_embed" not in got
    for k in want:
        assert torch.allclose(got[k], want[k], rtol=1e-4, atol=1e-6), k
    # the check is sensitive: letting gradient through the branch changes the encoder gradient
    assert any(not torch.allclose(without_stop[k], want[k], rtol=1e-3, atol=1e-6) for k in want)


def count_saved_tensors(model, imgs, noise):
    count = 0

    def pack(t):
        nonlocal count
        count += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(imgs, noise)
    return count


def test_cnp_branch_saves_nothing_for_backward():
    mae, nor = pair(lam=5e-5, img_size=32)
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 64)
    mae_count = count_saved_tensors(mae, imgs, noise)
    nor_count = count_saved_tensors(nor, imgs, noise)
    assert mae_count >= 50  # the hook does see the encoder/decoder activations
    assert mae_count <= nor_count <= mae_count + 20  # only the loss arithmetic is extra
    assert nor_count < 1.3 * mae_count


def capture_second_encode(model, imgs, noise, monkeypatch):
    inputs = []
    original = model.encode

    def spy(kept_tokens):
        inputs.append(kept_tokens.detach().clone())
        return original(kept_tokens)

    monkeypatch.setattr(model, "encode", spy)
    model(imgs, noise)
    assert len(inputs) == 2
    return inputs


def brute_closest_index(tokens, grid):
    """Torus closest neighbour by explicit loops (float64), ties to the lowest index."""
    x = tokens.double()
    height, width = grid
    out = torch.zeros(x.shape[:2], dtype=torch.long)
    for n in range(x.shape[0]):
        for l in range(x.shape[1]):
            r, c = divmod(l, width)
            best, best_j = -math.inf, None
            for dy, dx in OFFSETS:
                j = ((r + dy) % height) * width + (c + dx) % width
                if j == l:
                    continue
                s = torch.nn.functional.cosine_similarity(x[n, l], x[n, j], dim=0).item()
                if s > best or (s == best and j < best_j):
                    best, best_j = s, j
            out[n, l] = best_j
    return out


def test_cnp_branch_feeds_closest_neighbor_tokens(monkeypatch):
    model = tiny_model(method="nor_mae", cnp="paper", img_size=(16, 20))
    imgs = torch.randn(2, 3, 16, 20, generator=torch.Generator().manual_seed(4))
    noise = torch.rand(2, 20, generator=torch.Generator().manual_seed(5))
    first, second = capture_second_encode(model, imgs, noise, monkeypatch)
    with torch.no_grad():
        tokens = model.embed(imgs)
    _, _, _, ids_keep = random_masking(tokens, model.mask_ratio, noise)
    closest = brute_closest_index(tokens, model.grid)
    for n in range(2):
        assert torch.equal(first[n], tokens[n, ids_keep[n]])
        expected = tokens[n, closest[n, ids_keep[n]]]
        assert torch.equal(second[n], expected)
        # the neighbour's own position embedding comes along: not the kept token's
        assert not torch.allclose(second[n], first[n])


def test_cnp_branch_authors_code_mode_feeds_first_row_tokens(monkeypatch):
    model = tiny_model(method="nor_mae", cnp="authors_code", img_size=(16, 20))
    imgs = torch.randn(2, 3, 16, 20, generator=torch.Generator().manual_seed(4))
    noise = torch.rand(2, 20, generator=torch.Generator().manual_seed(5))
    _, second = capture_second_encode(model, imgs, noise, monkeypatch)
    with torch.no_grad():
        tokens = model.embed(imgs)
    _, _, _, ids_keep = random_masking(tokens, model.mask_ratio, noise)
    source = authors_code_source_index(tokens, model.grid)
    for n in range(2):
        assert torch.equal(second[n], tokens[n, source[n, ids_keep[n]]])


# ----------------------------------------------------------------------------- parameter names, checkpoints


def expected_keys(depth, decoder_depth):
    block = [
        "norm1.weight",
        "norm1.bias",
        "attn.qkv.weight",
        "attn.qkv.bias",
        "attn.proj.weight",
        "attn.proj.bias",
        "norm2.weight",
        "norm2.bias",
        "mlp.fc1.weight",
        "mlp.fc1.bias",
        "mlp.fc2.weight",
        "mlp.fc2.bias",
    ]
    keys = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    keys += [f"blocks.{i}.{b}" for i in range(depth) for b in block]
    keys += [
        "norm.weight",
        "norm.bias",
        "mask_token",
        "decoder_pos_embed",
        "decoder_embed.weight",
        "decoder_embed.bias",
    ]
    keys += [f"decoder_blocks.{i}.{b}" for i in range(decoder_depth) for b in block]
    keys += ["decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"]
    return keys


def test_state_dict_keys_match_mae_layout():
    model = tiny_model()
    keys = list(model.state_dict().keys())
    assert sorted(keys) == sorted(expected_keys(2, 2))
    assert len(keys) == len(set(keys))
    sd = model.state_dict()
    assert sd["pos_embed"].shape == (1, 17, 32)
    assert sd["decoder_pos_embed"].shape == (1, 17, 24)
    assert sd["patch_embed.proj.weight"].shape == (32, 3, 4, 4)
    assert sd["decoder_pred.weight"].shape == (48, 24)
    assert sd["mask_token"].shape == (1, 1, 24) and sd["cls_token"].shape == (1, 1, 32)


def test_checkpoint_round_trip_strict():
    model = tiny_model(seed=0, method="nor_mae")
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict()}, buffer)
    buffer.seek(0)
    fresh = tiny_model(seed=99, method="nor_mae")
    assert not torch.equal(fresh.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)
    result = fresh.load_state_dict(torch.load(buffer, weights_only=True)["model"], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    imgs = torch.randn(1, 3, 16, 16)
    noise = torch.rand(1, 16)
    assert torch.equal(fresh(imgs, noise).loss, model(imgs, noise).loss)


@pytest.mark.parametrize("img_size, patch", [(32, 8), ((24, 16), 4)])
def test_encoder_state_dict_loads_into_timm(img_size, patch):
    model = tiny_model(img_size=img_size, patch_size=patch)
    vit = VisionTransformer(
        img_size=img_size, patch_size=patch, embed_dim=32, depth=2, num_heads=4, num_classes=0, global_pool="token"
    )
    encoder = model.encoder_state_dict()
    assert not any(k.startswith(("decoder_", "mask_token")) for k in encoder)
    vit.load_state_dict(encoder, strict=True)
    model.eval()
    vit.eval()
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    imgs = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    length = (h // patch) * (w // patch)
    with torch.no_grad():
        tokens = model.embed(imgs)
        ours = model.encode(tokens)
        theirs = vit.forward_features(imgs)
        # the training path with mask ratio 0 and increasing noise keeps every token, in order
        kept, mask, _, ids_keep = random_masking(tokens, 0.0, torch.arange(length, dtype=torch.float).expand(2, -1))
        assert mask.sum() == 0 and torch.equal(kept, tokens)
        masked_path = model.encode(kept)
    assert ours.shape == theirs.shape == (2, 1 + length, 32)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    assert torch.equal(masked_path, ours)


# ----------------------------------------------------------------------------- initialisation


def test_position_embeddings_frozen_sincos():
    model = tiny_model(img_size=(16, 20))
    assert model.pos_embed.requires_grad is False
    assert model.decoder_pos_embed.requires_grad is False
    assert torch.equal(model.pos_embed[0], torch.from_numpy(sincos_pos_embed(32, (4, 5))).float())
    assert torch.equal(model.decoder_pos_embed[0], torch.from_numpy(sincos_pos_embed(24, (4, 5))).float())
    # the embedded tokens carry it
    imgs = torch.randn(1, 3, 16, 20)
    with torch.no_grad():
        assert torch.allclose(model.embed(imgs), model.patch_embed(imgs) + model.pos_embed[:, 1:], atol=0)


def test_initialisation():
    torch.manual_seed(0)
    model = MaskedAutoencoderViT(
        img_size=16, patch_size=8, embed_dim=512, depth=1, num_heads=4,
        decoder_embed_dim=512, decoder_depth=1, decoder_num_heads=4, mlp_ratio=1.0,
    )  # fmt: skip
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            assert torch.equal(module.bias, torch.zeros_like(module.bias)), name
            bound = math.sqrt(6.0 / (module.in_features + module.out_features))
            assert module.weight.abs().max() <= bound + 1e-7, name
            assert module.weight.abs().max() > 0.9 * bound, name  # xavier, not a narrower default
        elif isinstance(module, nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight)), name
            assert torch.equal(module.bias, torch.zeros_like(module.bias)), name
            assert module.eps == 1e-6
    # patch embedding: xavier uniform on the flattened (D, C*p*p) view
    weight = model.patch_embed.proj.weight
    bound = math.sqrt(6.0 / (512 + 3 * 8 * 8))
    assert weight.abs().max() <= bound + 1e-7
    assert weight.abs().max() > 0.9 * bound
    for token in (model.cls_token, model.mask_token):
        assert 0.016 < token.std().item() < 0.024
        assert abs(token.mean().item()) < 0.005


# ----------------------------------------------------------------------------- sizes


def test_build_mae_vit_tiny():
    model = build_mae("vit_tiny", img_size=224, patch_size=16)
    assert model.patch_embed.proj.out_channels == 192
    assert len(model.blocks) == 12
    assert model.blocks[0].attn.num_heads == 12
    assert len(model.decoder_blocks) == 12
    assert model.decoder_embed.out_features == 192
    assert model.decoder_blocks[0].attn.num_heads == 12
    assert model.decoder_pred.out_features == 16 * 16 * 3
    encoder_params = sum(v.numel() for v in model.encoder_state_dict().values())
    assert 5.4e6 < encoder_params < 5.8e6
    assert model.grid == (14, 14)


def test_model_size_table():
    assert MODEL_SIZES["vit_small"].embed_dim == 384 and MODEL_SIZES["vit_small"].decoder_embed_dim == 256
    assert MODEL_SIZES["vit_small"].num_heads == 6 and MODEL_SIZES["vit_small"].decoder_num_heads == 8
    assert MODEL_SIZES["vit_base"].embed_dim == 768 and MODEL_SIZES["vit_base"].decoder_embed_dim == 512
    assert MODEL_SIZES["vit_base"].decoder_depth == 12 and MODEL_SIZES["vit_base"].decoder_num_heads == 16


def test_build_mae_passes_options():
    model = build_mae("vit_micro", img_size=32, patch_size=8, method="nor_mae", lam=0.1, cnp="random", mask_ratio=0.5)
    assert (model.method, model.lam, model.cnp, model.mask_ratio) == ("nor_mae", 0.1, "random", 0.5)
    assert model.grid == (4, 4)


@pytest.mark.parametrize("size", ["vit_huge", "tiny", ""])
def test_build_mae_unknown_size(size):
    with pytest.raises(ValueError, match="unknown model size"):
        build_mae(size)


def test_no_weight_decay_names_are_parameters():
    model = tiny_model()
    names = dict(model.named_parameters())
    assert model.no_weight_decay()
    for name in model.no_weight_decay():
        assert name in names
    assert {"cls_token", "mask_token", "pos_embed", "decoder_pos_embed"} <= set(model.no_weight_decay())
