"""Semantic segmentation metrics from one confusion matrix, with mmseg's definitions.

Why a matrix of our own and not torchmetrics in the evaluation loop: mmseg's mIoU (what BEiT and
MAE report on ADE20K) leaves out of the mean the classes absent from both the ground truth and the
prediction (their IoU is NaN and the mean is a nanmean), and one (C x C) count matrix gives mIoU,
aAcc, mAcc and per-class IoU with a single all-reduce over ranks. The matrix is the MAE reference's
plain style: ``torch.bincount`` of ``target * C + prediction``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class ConfusionMatrix:
    """Pixel counts, rows = ground-truth class, columns = predicted class (int64, on ``device``)."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count the pixels of ``pred`` and ``target`` (same shape, integer class ids).

        Pixels whose target is ``ignore_index`` are skipped; any other target (or prediction) outside
        [0, num_classes) raises ``ValueError`` naming the value.
        """
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
        pred = pred.reshape(-1).to(self.matrix.device, torch.int64)
        target = target.reshape(-1).to(self.matrix.device, torch.int64)
        labelled = target != self.ignore_index
        pred, target = pred[labelled], target[labelled]
        bad_target = (target < 0) | (target >= self.num_classes)
        bad_pred = (pred < 0) | (pred >= self.num_classes)
        if any(torch.stack([bad_target.any(), bad_pred.any()]).tolist()):
            kind, values = ("target", target[bad_target]) if bad_target.any() else ("prediction", pred[bad_pred])
            raise ValueError(
                f"{kind} value {int(values[0])} is outside [0, {self.num_classes})"
                + (f" and is not ignore_index {self.ignore_index}" if kind == "target" else "")
            )
        counts = torch.bincount(target * self.num_classes + pred, minlength=self.num_classes**2)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)

    def all_reduce(self) -> None:
        """Sum the counts over the ``torch.distributed`` ranks (nothing when not initialised)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix)

    def compute(self) -> dict:
        """mmseg's metrics in percent: ``miou``, ``pixel_accuracy`` (aAcc), ``mean_accuracy`` (mAcc).

        Per class: IoU = TP / (TP + FP + FN), NaN where the class is in neither target nor prediction;
        accuracy = TP / (TP + FN), NaN where it is not in the target. The means skip the NaNs.
        ``per_class_iou`` holds None for NaN; ``pixels`` is the number of pixels counted.
        """
        matrix = self.matrix.double().cpu()
        true_positive = matrix.diagonal()
        in_target, in_prediction = matrix.sum(dim=1), matrix.sum(dim=0)
        iou = true_positive / (in_target + in_prediction - true_positive)  # 0 / 0 = NaN
        accuracy = true_positive / in_target
        pixels = int(matrix.sum())
        return {
            "miou": 100.0 * iou.nanmean().item(),
            "pixel_accuracy": 100.0 * true_positive.sum().item() / pixels if pixels else float("nan"),
            "mean_accuracy": 100.0 * accuracy.nanmean().item(),
            "per_class_iou": [None if value != value else 100.0 * value for value in iou.tolist()],
            "pixels": pixels,
        }
