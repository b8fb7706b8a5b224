"""Reconstruction and NoR losses (normae/losses.py) against explicit matrix references."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from normae.core.losses import nor_loss, reconstruction_loss, standardize_tokens
from normae.spec import NOR_VARIANTS


def ref_standardize(z):
    z = z.double()
    mean = z.mean(-1, keepdim=True)
    var = ((z - mean) ** 2).sum(-1, keepdim=True) / (z.shape[-1] - 1)
    return (z - mean) / torch.sqrt(var + 1e-6)


def ref_nor(z, z_cnp, variant, standardize):
    """Forms the relation matrices explicitly, in float64."""
    z, z_cnp = z.double(), z_cnp.double()
    if standardize:
        z, z_cnp = ref_standardize(z), ref_standardize(z_cnp)
    n_batch, length, dim = z.shape
    if variant == "token":
        m = sum(z[b] @ z_cnp[b].T for b in range(n_batch)) / n_batch / dim  # L x L
        assert m.shape == (length, length)
        return m.sum() - m.trace()
    c = sum(z[b].T @ z_cnp[b] for b in range(n_batch)) / n_batch / length  # D x D
    assert c.shape == (dim, dim)
    if variant == "offdiag":
        return c.sum() - c.trace()
    return c.trace()


SHAPES = [(2, 5, 7), (3, 9, 4), (1, 6, 6), (4, 16, 48)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", NOR_VARIANTS)
@pytest.mark.parametrize("standardize", [True, False])
def test_nor_loss_matches_matrix_reference_float64(shape, variant, standardize):
    g = torch.Generator().manual_seed(sum(shape))
    # an offset so that the non-standardised token sums are far from zero
    z = torch.randn(*shape, generator=g, dtype=torch.float64) + 0.7
    z_cnp = torch.randn(*shape, generator=g, dtype=torch.float64) * 2 - 0.3
    got = nor_loss(z, z_cnp, variant=variant, standardize=standardize)
    ref = ref_nor(z, z_cnp, variant, standardize)
    assert got.dim() == 0
    # the implementation works in float32 internally, so "tight" means float32 tight
    assert torch.allclose(got.double(), ref, rtol=1e-5, atol=1e-4), (got.item(), ref.item())


@pytest.mark.parametrize("variant", NOR_VARIANTS)
@pytest.mark.parametrize("standardize", [True, False])
def test_nor_loss_matches_matrix_reference_float32(variant, standardize):
    g = torch.Generator().manual_seed(42)
    z = torch.randn(3, 12, 20, generator=g) + 0.5
    z_cnp = torch.randn(3, 12, 20, generator=g) + 0.25
    got = nor_loss(z, z_cnp, variant=variant, standardize=standardize)
    ref = ref_nor(z, z_cnp, variant, standardize)
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), ref, rtol=1e-4, atol=1e-3), (got.item(), ref.item())


def test_nor_variants_differ_and_average_over_batch():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 6, 5, generator=g, dtype=torch.float64) + 1
    z_cnp = torch.randn(2, 6, 5, generator=g, dtype=torch.float64)
    values = {v: nor_loss(z, z_cnp, v, standardize=False).item() for v in NOR_VARIANTS}
    assert len({round(v, 6) for v in values.values()}) == 3
    # the batch is averaged, not summed: duplicating the batch leaves every variant unchanged
    for v in NOR_VARIANTS:
        doubled = nor_loss(torch.cat([z, z]), torch.cat([z_cnp, z_cnp]), v, standardize=False).item()
        assert doubled == pytest.approx(values[v], rel=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_offdiag_is_minus_diag_when_standardized(shape):
    g = torch.Generator().manual_seed(7)
    z = torch.randn(*shape, generator=g) * 3 + 1
    z_cnp = torch.randn(*shape, generator=g) - 2
    off = nor_loss(z, z_cnp, "offdiag", standardize=True)
    diag = nor_loss(z, z_cnp, "diag", standardize=True)
    assert abs(diag.item()) > 1e-3
    assert off.item() == pytest.approx(-diag.item(), rel=1e-4, abs=1e-4)
    # not an identity without standardisation
    off_raw = nor_loss(z, z_cnp, "offdiag", standardize=False)
    diag_raw = nor_loss(z, z_cnp, "diag", standardize=False)
    assert abs(off_raw.item() + diag_raw.item()) > 1e-2


def test_nor_loss_is_differentiable_in_z():
    z = torch.randn(2, 4, 6, requires_grad=True)
    z_cnp = torch.randn(2, 4, 6)
    nor_loss(z, z_cnp).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


class MaxNumel(TorchDispatchMode):
    """Records the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("variant", NOR_VARIANTS)
def test_nor_loss_never_forms_a_d_by_d_matrix(variant):
    n_batch, length, dim = 2, 4, 50_000  # a D x D float32 matrix would take 10 GB
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n_batch, length, dim, generator=g)
    z_cnp = torch.randn(n_batch, length, dim, generator=g)
    with MaxNumel() as probe:
        value = nor_loss(z, z_cnp, variant=variant)
    assert torch.isfinite(value)
    assert n_batch * length * dim <= probe.largest  # the probe saw the full-size operations
    assert probe.largest <= n_batch * length * dim
    if variant == "offdiag":
        # the exact identity with standardised tokens holds at this size too
        diag = nor_loss(z, z_cnp, "diag")
        assert value.item() == pytest.approx(-diag.item(), rel=1e-3, abs=1e-3)


# ----------------------------------------------------------------------------- standardize_tokens


def test_standardize_tokens_moments():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 10, 48, generator=g, dtype=torch.float64) * torch.linspace(0.01, 5, 10)[:, None] + 4
    out = standardize_tokens(z)
    assert out.shape == z.shape
    var = z.var(dim=-1, keepdim=True)  # unbiased
    assert torch.allclose(out.mean(-1), torch.zeros(3, 10, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(out.var(-1, keepdim=True), var / (var + 1e-6), rtol=1e-10)
    assert torch.allclose(out, ref_standardize(z), rtol=1e-12, atol=1e-12)


def test_standardize_tokens_uses_unbiased_variance_and_eps():
    z = torch.tensor([[0.0, 2.0]], dtype=torch.float64)  # mean 1, unbiased var 2, biased var 1
    out = standardize_tokens(z)
    expected = torch.tensor([[-1.0, 1.0]], dtype=torch.float64) / (2.0 + 1e-6) ** 0.5
    assert torch.allclose(out, expected, rtol=1e-14)
    # a constant token stays finite (eps) and becomes zero
    const = standardize_tokens(torch.full((2, 5), 3.0))
    assert torch.equal(const, torch.zeros(2, 5))
    # custom eps is honoured
    assert torch.allclose(standardize_tokens(z, eps=2.0), torch.tensor([[-0.5, 0.5]], dtype=torch.float64))


# ----------------------------------------------------------------------------- reconstruction_loss


def hand_rec_loss(pred, target, mask, norm_pix):
    pred, target = pred.double(), target.double()
    if norm_pix:
        target = ref_standardize(target)
    total, count = 0.0, 0
    for n in range(pred.shape[0]):
        for l in range(pred.shape[1]):
            if mask[n, l] == 1:
                total += ((pred[n, l] - target[n, l]) ** 2).mean().item()
                count += 1
    return total / count


@pytest.mark.parametrize("norm_pix", [True, False])
def test_reconstruction_loss_matches_hand_computation(norm_pix):
    g = torch.Generator().manual_seed(3)
    pred = torch.randn(3, 8, 12, generator=g)
    target = torch.rand(3, 8, 12, generator=g) * 4
    mask = (torch.rand(3, 8, generator=g) > 0.4).float()
    mask[0, 0] = 1
    got = reconstruction_loss(pred, target, mask, norm_pix=norm_pix)
    assert got.dim() == 0
    assert got.item() == pytest.approx(hand_rec_loss(pred, target, mask, norm_pix), rel=1e-5)


def test_reconstruction_loss_norm_pix_changes_target():
    g = torch.Generator().manual_seed(4)
    pred = torch.randn(2, 4, 6, generator=g)
    target = torch.rand(2, 4, 6, generator=g) * 10 + 5
    mask = torch.ones(2, 4)
    a = reconstruction_loss(pred, target, mask, norm_pix=True).item()
    b = reconstruction_loss(pred, target, mask, norm_pix=False).item()
    assert a != pytest.approx(b, rel=1e-2)
    # predicting the normalised target exactly gives zero only with norm_pix
    assert reconstruction_loss(standardize_tokens(target), target, mask, norm_pix=True).item() < 1e-10
    assert reconstruction_loss(target, target, mask, norm_pix=False).item() == 0.0


def test_reconstruction_loss_ignores_kept_positions():
    g = torch.Generator().manual_seed(5)
    pred = torch.randn(2, 10, 6, generator=g)
    target = torch.randn(2, 10, 6, generator=g)
    mask = torch.zeros(2, 10)
    mask[0, [1, 4, 7]] = 1
    mask[1, [0, 9]] = 1
    base = reconstruction_loss(pred, target, mask)
    changed = pred.clone()
    changed[mask == 0] += 100.0
    assert torch.equal(reconstruction_loss(changed, target, mask), base)
    # changing a removed position does change it
    changed = pred.clone()
    changed[0, 4] += 1.0
    assert reconstruction_loss(changed, target, mask).item() != pytest.approx(base.item())
    # average over removed patches, not over all patches: one removed patch with error e gives e
    single = torch.zeros(1, 10)
    single[0, 3] = 1
    p = torch.zeros(1, 10, 6)
    p[0, 3] = 2.0
    assert reconstruction_loss(p, torch.zeros(1, 10, 6), single, norm_pix=False).item() == pytest.approx(4.0)


def test_reconstruction_loss_gradient_only_on_removed():
    pred = torch.randn(1, 6, 4, requires_grad=True)
    target = torch.randn(1, 6, 4)
    mask = torch.tensor([[1.0, 0, 0, 1, 0, 1]])
    reconstruction_loss(pred, target, mask).backward()
    per_pos = pred.grad.abs().sum(-1)[0]
    assert (per_pos[mask[0] == 0] == 0).all()
    assert (per_pos[mask[0] == 1] > 0).all()
