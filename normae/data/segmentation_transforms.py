"""Joint image + mask transforms of the segmentation sets (normae.data.segmentation), in torchvision.transforms.v2.

They take and return ``(tv_tensors.Image, tv_tensors.Mask)``: v2 moves both with one draw of the
parameters, resizes a Mask with nearest interpolation whatever the image's, and leaves it out of
the colour changes and of Normalize. The image comes in uint8, goes out float32 normalised with the
set's statistics; the mask goes out int64. Every draw comes from torch's generator.

The steps mmseg has and torchvision lacks are three small v2.Transform classes here: the
keep-ratio rescale of mmseg's Resize/RandomResize, RandomCrop with cat_max_ratio, and the Pad to
the crop size that follows Normalize.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from normae.data.registry import DATASETS, IGNORE_INDEX, SEGMENTATION_SETS
from normae.errors import ConfigError

RATIO_RANGE = (0.5, 2.0)  # mmseg's RandomResize ratio_range for ADE20K
CAT_MAX_RATIO = 0.75  # mmseg's RandomCrop: re-draw a crop where one class covers this much of it
CROP_TRIES = 10
# mmseg's PhotoMetricDistortion: brightness delta 32 (of 255), contrast and saturation 0.5-1.5, hue 18 degrees.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 32 / 255, (0.5, 1.5), (0.5, 1.5), 18 / 360


def _size(flat_inputs: list[Any]) -> tuple[int, int]:
    """(height, width) of the first image or mask among a transform's inputs."""
    for inpt in flat_inputs:
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            height, width = F.get_size(inpt)
            return height, width
    raise TypeError("a segmentation transform needs a tv_tensors.Image or tv_tensors.Mask")


def keep_ratio_size(height: int, width: int, short_side: float, long_side_max: float | None) -> list[int]:
    """mmseg's keep_ratio rescale: the short side to ``short_side`` unless the long side would pass
    ``long_side_max``, then the long side to that (mmcv.rescale_size's rounding)."""
    scale = short_side / min(height, width)
    if long_side_max is not None:
        scale = min(scale, long_side_max / max(height, width))
    return [int(height * scale + 0.5), int(width * scale + 0.5)]


class KeepRatioRescale(v2.Transform):
    """mmseg's RandomResize(scale=(long_side_max, short_side), ratio_range, keep_ratio=True): both sides of the
    base scale times a ratio drawn uniformly from ``ratio_range``, the image bilinear, a mask nearest.

    With ``ratio_range=(1, 1)`` it draws nothing: mmseg's test Resize. ``resize_masks=False`` leaves
    masks at their size (mmseg scores its predictions at the annotation's own size).
    """

    def __init__(self, short_side: int, long_side_max: int | None, ratio_range=(1.0, 1.0), resize_masks=True):
        super().__init__()
        self.short_side, self.long_side_max = short_side, long_side_max
        self.ratio_range, self.resize_masks = ratio_range, resize_masks

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        low, high = self.ratio_range
        ratio = low if low == high else low + (high - low) * float(torch.rand(()))
        long_side = None if self.long_side_max is None else self.long_side_max * ratio
        return {"size": keep_ratio_size(*_size(flat_inputs), self.short_side * ratio, long_side)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask) and not self.resize_masks:
            return inpt
        return self._call_kernel(
            F.resize, inpt, size=params["size"], interpolation=v2.InterpolationMode.BILINEAR, antialias=True
        )


class CropAtMost(v2.Transform):
    """mmseg's RandomCrop(crop_size, cat_max_ratio): a ``size`` x ``size`` window (the whole side where the image
    is smaller) at a uniform offset, drawn again, up to CROP_TRIES times, while one class covers
    ``cat_max_ratio`` or more of the window's scored (not IGNORE_INDEX) pixels or it holds one class only."""

    def __init__(self, size: int, cat_max_ratio: float = CAT_MAX_RATIO):
        super().__init__()
        self.size, self.cat_max_ratio = size, cat_max_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _size(flat_inputs)
        crop_height, crop_width = min(self.size, height), min(self.size, width)

        def draw() -> tuple[int, int]:
            top = int(torch.randint(0, height - crop_height + 1, ()))
            return top, int(torch.randint(0, width - crop_width + 1, ()))

        top, left = draw()
        masks = [inpt for inpt in flat_inputs if isinstance(inpt, tv_tensors.Mask)]
        if masks and self.cat_max_ratio < 1:
            for _ in range(CROP_TRIES):
                window = masks[0][..., top : top + crop_height, left : left + crop_width]
                counts = torch.bincount(window.reshape(-1).long(), minlength=IGNORE_INDEX + 1)
                counts[IGNORE_INDEX] = 0
                counts = counts[counts > 0]
                if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                top, left = draw()
        return {"top": top, "left": left, "height": crop_height, "width": crop_width}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


class PadTo(v2.Transform):
    """mmseg's Pad(size=crop, pad_val=0, seg_pad_val=255) after Normalize: the bottom and right edges up to
    ``size``, the image with 0 (once normalised: the mean colour), a mask with IGNORE_INDEX."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _size(flat_inputs)
        return {"padding": [0, 0, max(0, self.size - width), max(0, self.size - height)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not any(params["padding"]):
            return inpt
        fill = IGNORE_INDEX if isinstance(inpt, tv_tensors.Mask) else 0
        return self._call_kernel(F.pad, inpt, padding=params["padding"], fill=fill)


def _facts(name: str):
    if name not in SEGMENTATION_SETS:
        raise ConfigError(f"unknown segmentation data set {name!r}; known: {', '.join(SEGMENTATION_SETS)}")
    return DATASETS[name], SEGMENTATION_SETS[name]


def photometric_distortion() -> v2.Transform:
    """mmseg's PhotoMetricDistortion in v2 ColorJitters: brightness, then contrast either first or last (one
    draw), saturation and hue, each applied with probability 0.5. Brightness is torchvision's factor
    in 1 +- 32/255 where mmseg adds a delta in +-32 (of 255)."""

    def maybe(**jitter) -> v2.Transform:
        return v2.RandomApply([v2.ColorJitter(**jitter)], p=0.5)

    brightness, contrast = maybe(brightness=BRIGHTNESS), maybe(contrast=CONTRAST)
    saturation, hue = maybe(saturation=SATURATION), maybe(hue=HUE)
    return v2.RandomChoice(
        [v2.Compose([brightness, contrast, saturation, hue]), v2.Compose([brightness, saturation, hue, contrast])]
    )


def finish_transform(name: str) -> v2.Transform:
    """To float (the image scaled to [0, 1], the mask int64) and Normalize with the set's statistics."""
    facts, _ = _facts(name)
    return v2.Compose(
        [
            v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
            v2.Normalize(list(facts.mean), list(facts.std)),
        ]
    )


def train_transform(name: str, crop: int, photometric: bool | None = None) -> v2.Transform:
    """mmseg's (BEiT's, MAE's) ADE20K training pipeline as far as torchvision has it.

    RandomResize: a ratio 0.5-2.0 of the base scale (ADE20K: short side 512, long side at most 2048;
    the canvas: its side), aspect kept. RandomCrop ``crop`` x ``crop`` with cat_max_ratio 0.75 (up
    to 10 draws), the whole side where the image is smaller. RandomFlip 0.5. PhotoMetricDistortion
    (ADE20K only; ``photometric`` overrides the set's choice) as photometric_distortion() does it.
    Normalize, then Pad to ``crop`` (image 0 after normalising, mask IGNORE_INDEX) on the bottom
    and right, as mmseg does.

    What differs from mmseg: brightness is a factor, not an added delta (photometric_distortion);
    the rescale is bilinear with antialiasing (torchvision's) where mmseg's cv2 resize has none.
    """
    facts, segmentation = _facts(name)
    distort = segmentation.photometric_distortion if photometric is None else photometric
    steps = [
        KeepRatioRescale(segmentation.scale_short_side, segmentation.scale_long_side_max, RATIO_RANGE),
        CropAtMost(crop),
        v2.RandomHorizontalFlip(0.5),
        *([photometric_distortion()] if distort else []),
        finish_transform(name),
        PadTo(crop),
    ]
    return v2.Compose(steps)


def eval_transform(name: str, resize_masks: bool = True) -> v2.Transform:
    """mmseg's test pipeline: ADE20K resized to a short side of 512 unless the long side would pass 2048
    (keep_ratio), the mask with nearest; the canvas kept as it is; then to float and Normalize.

    ``resize_masks=False`` keeps the mask at the annotation's size, where mmseg scores (its
    predictions resized back to that size).
    """
    _, segmentation = _facts(name)
    if segmentation.eval_short_side is None:
        return finish_transform(name)
    resize = KeepRatioRescale(segmentation.eval_short_side, segmentation.eval_long_side_max, resize_masks=resize_masks)
    return v2.Compose([resize, finish_transform(name)])
