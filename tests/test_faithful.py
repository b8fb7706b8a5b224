"""Faithful miniatures: every NoR-MAE row a stand-in scale runs keeps the NoR term's share of the gradient
within 0.5x-2x of the paper geometry's (config/nor_share_paper.csv), measured on the same images."""

import dataclasses

import pytest

from normae.analysis.nor_share import measure_share
from normae.experiments import plan as normae_plan
from normae.experiments.config import CONFIG_DIR
from normae.experiments.faithful import (
    PAPER_SHARE_FILE,
    nor_rows,
    paper_geometry,
    pull_checks,
    read_paper_shares,
)
from normae.spec.geometry import Geometry

PAPER_SHARES = read_paper_shares(CONFIG_DIR / PAPER_SHARE_FILE)
_MEASURED: dict[Geometry, float] = {}


def standin_share(geometry: Geometry) -> float:
    """Measured once per geometry for the whole session (the checks of three scales share stand-ins)."""
    if geometry not in _MEASURED:
        _MEASURED[geometry] = measure_share(geometry).share_per_lambda
    return _MEASURED[geometry]


def _plan(scale):
    return normae_plan.expand(normae_plan.load_experiments(), scale)


@pytest.mark.slow
@pytest.mark.parametrize("scale_name", ["tiny", "gpu", "cpu"])
def test_every_nor_mae_row_keeps_the_papers_pull(scale_name, fashion_mnist_root):
    rows = nor_rows(_plan(normae_plan.load_scale(scale_name)))
    assert rows, f"the {scale_name} scale runs no NoR-MAE row"
    checks = pull_checks(rows, PAPER_SHARES, standin_share)
    unfaithful = [check.line() for check in checks if not check.faithful()]
    assert not unfaithful, "\n".join(unfaithful)


@pytest.mark.slow
def test_a_scale_edit_that_loses_the_pull_fails(fashion_mnist_root):
    scale = normae_plan.load_scale("tiny")
    broken = dataclasses.replace(scale, lam_scale={key: factor / 10 for key, factor in scale.lam_scale.items()})
    rows = [row for row in nor_rows(_plan(broken)) if row.standin.model == "vit_micro"][:2]
    assert rows and not any(check.faithful() for check in pull_checks(rows, PAPER_SHARES, standin_share))
    unscaled = dataclasses.replace(scale, lam_scale=None)  # the paper's lambda at 28 px: the pull ~100x too weak
    rows = nor_rows(_plan(unscaled))[:2]
    assert all(check.ratio < 0.1 for check in pull_checks(rows, PAPER_SHARES, standin_share))


@pytest.mark.slow
def test_the_stored_paper_shares_are_what_the_code_measures(fashion_mnist_root):
    cheap = Geometry("vit_tiny", 224, 32)  # the cheapest paper geometry to remeasure (7x7 tokens)
    assert measure_share(cheap).share_per_lambda == pytest.approx(PAPER_SHARES[cheap], rel=1e-3)


def test_every_nor_mae_row_of_the_stand_in_scales_has_a_stored_paper_share():
    for name in ("tiny", "gpu", "cpu"):
        for row in nor_rows(_plan(normae_plan.load_scale(name))):
            assert row.paper in PAPER_SHARES, f"{name}: measure {row.paper.label()} with `normae nor-share --paper`"


def test_the_paper_geometry_is_the_papers_model_at_224_with_the_rows_terms():
    terms = {"model": "vit_small", "patch_size": 8, "mask_ratio": 0.85, "nor_variant": "diag", "cnp": "random"}
    assert paper_geometry(terms) == Geometry("vit_small", 224, 8, 0.85, "diag", "random")
    assert paper_geometry({"model": "vit_tiny", "patch_size": 16, "mask_ratio": 0.75}).cnp == "paper"
