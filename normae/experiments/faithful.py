"""Faithful miniatures: a stand-in scale keeps the NoR term's pull on the gradient.

The share ``||grad(lam * L_nor)|| / ||grad(L_rec)||`` depends on the pixels per patch and the model
(docs/workflow.md, "Faithful miniatures"), so a scale that shrinks images, patches or models rescales lambda:
its ``lam_scale`` (``<paper model>/<paper patch>[/<qualifier>]: factor``) multiplies the paper's lambda
of each NoR-MAE row, keeping the paper's ratios between lambdas. The paper geometry's share per unit lambda
is measured once (``normae nor-share --paper``, on the same images as the stand-ins) and kept in
``config/nor_share_paper.csv``; a test measures every NoR-MAE row of a scale against it.
No torch here: the planner reads the factors.
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass
from pathlib import Path

from normae.errors import ConfigError
from normae.spec.geometry import Geometry

PAPER_SHARE_FILE = "nor_share_paper.csv"
# The band a stand-in's share must lie in, as a multiple of the paper geometry's.
FAITHFUL_BAND = (0.5, 2.0)
# Significant digits of a rescaled lambda (so a spec's digest does not carry float noise).
LAM_DIGITS = 4


def lam_scale_key(paper_model: str, paper_patch: int, qualifier: str | None = None) -> str:
    return f"{paper_model}/{paper_patch}" + (f"/{qualifier}" if qualifier else "")


def lam_factor_key(
    lam_scale: dict, paper_model: str, paper_patch: int, cnp: str | None = None, nor_variant=None, mask_ratio=None
) -> str:
    """The key of ``lam_scale`` a row uses: ``<model>/<patch>/<qualifier>`` where the scale has one for the row's
    CNP source, NoR variant or mask ratio (``mr0.5``), in that order, else ``<model>/<patch>``. A qualifier is
    needed where the stand-in's pull reacts to that term differently than the paper geometry's: the authors'
    code's CNP pulls 15x harder than the true CNP at ViT-Tiny 224/16, 5x at vit_micro 28/4."""
    for qualifier in _qualifiers(cnp, nor_variant, mask_ratio):
        if lam_scale_key(paper_model, paper_patch, qualifier) in lam_scale:
            return lam_scale_key(paper_model, paper_patch, qualifier)
    return lam_scale_key(paper_model, paper_patch)


def _qualifiers(cnp: str | None, nor_variant: str | None, mask_ratio) -> list[str]:
    """The qualifiers a row's ``lam_scale`` key may carry, in the order they are looked up."""
    qualifiers = [cnp, nor_variant, None if mask_ratio is None else f"mr{float(mask_ratio):g}"]
    return [qualifier for qualifier in qualifiers if qualifier]


def check_lam_scale_keys(scale_name: str, lam_scale: dict | None, points: list[dict]) -> None:
    """Refuse a ``lam_scale`` key that no NoR-MAE grid point (``points``, the paper's terms) can look up:
    a typo (``mr0.50`` for ``mr0.5``) would otherwise leave its rows on the unqualified factor, silently."""
    valid = set()
    for point in points:
        model, patch = point["model"], point["patch_size"]
        valid.add(lam_scale_key(model, patch))
        qualifiers = _qualifiers(point.get("cnp"), point.get("nor_variant"), point.get("mask_ratio"))
        valid.update(lam_scale_key(model, patch, qualifier) for qualifier in qualifiers)
    for key in sorted(set(lam_scale or {}) - valid):
        nearest = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.0)
        hint = f": did you mean {nearest[0]!r}?" if nearest else ""
        raise ConfigError(f"scale {scale_name}: lam_scale key {key!r} matches no NoR-MAE row of experiments.yaml{hint}")


def scaled_lam(lam_scale: dict | None, point: dict) -> tuple[float, float]:
    """(lambda to run, factor) for a NoR-MAE grid point (the paper's terms); a scale without ``lam_scale`` runs
    the paper's lambda."""
    if not lam_scale:
        return float(point["lam"]), 1.0
    key = lam_factor_key(
        lam_scale,
        point["model"],
        point["patch_size"],
        point.get("cnp"),
        point.get("nor_variant"),
        point.get("mask_ratio"),
    )
    if key not in lam_scale:
        raise ConfigError(
            f"the scale's lam_scale has no factor for {key}: measure one with `normae nor-share --scales <scale>` "
            "and add it to config/scales/<scale>.yaml"
        )
    factor = float(lam_scale[key])
    return float(f"{point['lam'] * factor:.{LAM_DIGITS}g}"), factor


def read_paper_shares(path: str | Path) -> dict[Geometry, float]:
    """config/nor_share_paper.csv: each paper geometry's share per unit lambda."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} is missing: write it with `normae nor-share --paper --out {path}`")
    shares = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            geometry = Geometry(
                row["model"],
                int(row["img_size"]),
                int(row["patch_size"]),
                float(row["mask_ratio"]),
                row["nor_variant"],
                row["cnp"],
            )
            shares[geometry] = float(row["share_per_lambda"])
    return shares


def paper_geometry(terms: dict, paper_img_size: int = 224) -> Geometry:
    """The paper's model at 224 px with a row's patch size, mask ratio, NoR variant and CNP source."""
    return Geometry(
        terms["model"],
        paper_img_size,
        int(terms["patch_size"]),
        float(terms["mask_ratio"]),
        terms.get("nor_variant") or "offdiag",
        terms.get("cnp") or "paper",
    )


@dataclass(frozen=True)
class NorRow:
    """One NoR-MAE pre-training of a scale beside the paper row it stands for."""

    run_id: str
    paper: Geometry
    paper_lam: float
    standin: Geometry
    lam: float


def nor_rows(plan) -> list[NorRow]:
    """Every distinct (paper geometry and lambda, stand-in geometry and lambda) of the plan's NoR-MAE rows."""
    from normae.data.registry import DATASETS
    from normae.experiments.config import PAPER_IMG_SIZE

    seen, rows = set(), []
    for table in plan.tables.values():
        for row in table.rows:
            if row.terms.get("method") != "nor_mae" or not row.pretrain_ids:
                continue
            spec = plan.pretrain[row.pretrain_ids[0]]
            img_size = int(spec.img_size or DATASETS[spec.dataset].img_size or PAPER_IMG_SIZE)
            item = NorRow(
                spec.run_id(),
                paper_geometry(row.terms, PAPER_IMG_SIZE),
                float(row.terms["lam"]),
                Geometry.of_spec(spec, img_size),
                spec.lam,
            )
            key = (item.paper, item.paper_lam, item.standin, item.lam)  # seeds of one row measure alike
            if key not in seen:
                seen.add(key)
                rows.append(item)
    return rows


@dataclass(frozen=True)
class PullCheck:
    """A NoR-MAE row's share at the scale beside the paper geometry's, both at their lambdas."""

    row: NorRow
    share: float
    paper_share: float

    @property
    def ratio(self) -> float:
        return self.share / self.paper_share

    def faithful(self) -> bool:
        return FAITHFUL_BAND[0] <= self.ratio <= FAITHFUL_BAND[1]

    def line(self) -> str:
        verdict = "ok" if self.faithful() else f"OUTSIDE {FAITHFUL_BAND[0]:g}x-{FAITHFUL_BAND[1]:g}x"
        return (
            f"{self.row.paper.label()} lam {self.row.paper_lam:g}: paper {self.paper_share:.3g}; "
            f"{self.row.standin.label()} lam {self.row.lam:g}: {self.share:.3g}; ratio {self.ratio:.2f} {verdict}"
        )


def pull_checks(rows: list[NorRow], paper_shares: dict[Geometry, float], measure) -> list[PullCheck]:
    """Each row's check; ``measure(geometry)`` gives a stand-in's share per unit lambda (memoised here)."""
    measured: dict[Geometry, float] = {}
    checks = []
    for row in rows:
        if row.paper not in paper_shares:
            raise ConfigError(
                f"{PAPER_SHARE_FILE} has no share for {row.paper.label()}: add it with `normae nor-share --paper`"
            )
        if row.standin not in measured:
            measured[row.standin] = measure(row.standin)
        checks.append(PullCheck(row, measured[row.standin] * row.lam, paper_shares[row.paper] * row.paper_lam))
    return checks
