"""A pre-training run's geometry: what the NoR term's pull on the gradient depends on (torch-free).

The planner's lambda rescaling (``normae.experiments.faithful``) and the measurement of the pull
(``normae.analysis.nor_share``) both key on it, so it lives with the specs that both may read.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    """What the NoR term's pull depends on (lambda aside: the share is linear in it)."""

    model: str
    img_size: int
    patch_size: int
    mask_ratio: float = 0.75
    nor_variant: str = "offdiag"
    cnp: str = "paper"

    @classmethod
    def of_spec(cls, spec, img_size: int) -> Geometry:
        return cls(spec.model, img_size, spec.patch_size, spec.mask_ratio, spec.nor_variant, spec.cnp)

    def label(self) -> str:
        return (
            f"{self.model} {self.img_size}/{self.patch_size} mask {self.mask_ratio:g} {self.nor_variant} cnp {self.cnp}"
        )
