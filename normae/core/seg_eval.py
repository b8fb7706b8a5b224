"""Sliding-window inference and the ADE20K evaluation pass (mIoU, aAcc, mAcc over the whole set).

BEiT and MAE test their UperNet with mmseg's ``EncoderDecoder`` in ``mode='slide'`` (crop 512,
stride 341): ``slide_inference`` repeats it, so the numbers compare with theirs. The validation
images have different sizes, so the pass takes one image per batch; with DDP each rank takes every
world_size-th image (as ``normae.core.classifier.evaluate``) and the confusion matrices are summed.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from normae.core.seg_metrics import ConfusionMatrix
from normae.errors import plain_worker_errors


def slide_inference(model: nn.Module, images: torch.Tensor, num_classes: int, crop: int, stride: int) -> torch.Tensor:
    """Main logits (N x num_classes x H x W, float32) averaged over crop x crop windows ``stride`` apart.

    mmseg's ``EncoderDecoder.slide_inference``: ``max(H - crop + stride - 1, 0) // stride + 1`` rows of
    windows (likewise columns), the last one moved back to end at the border; each pixel's logits are
    the mean over the windows that cover it. A window smaller than the crop (an image smaller than
    it) is zero-padded at the bottom and right to crop x crop and its logits cropped back.
    """
    if stride < 1 or stride > crop:
        raise ValueError(f"stride must be in [1, crop={crop}], got {stride}")
    batch, _, height, width = images.shape
    rows = max(height - crop + stride - 1, 0) // stride + 1
    columns = max(width - crop + stride - 1, 0) // stride + 1
    summed = images.new_zeros((batch, num_classes, height, width), dtype=torch.float32)
    windows = images.new_zeros((1, 1, height, width), dtype=torch.float32)
    for row in range(rows):
        for column in range(columns):
            bottom, right = min(row * stride + crop, height), min(column * stride + crop, width)
            top, left = max(bottom - crop, 0), max(right - crop, 0)
            window = images[:, :, top:bottom, left:right]
            window_height, window_width = window.shape[-2:]
            padded = F.pad(window, (0, crop - window_width, 0, crop - window_height))
            logits = model(padded)[0][:, :, :window_height, :window_width]
            summed[:, :, top:bottom, left:right] += logits.float()
            windows[:, :, top:bottom, left:right] += 1
    return summed / windows


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    dataset,
    device: torch.device,
    num_classes: int,
    *,
    ignore_index: int = 255,
    crop: int,
    stride: int,
    amp_dtype: torch.dtype | None = None,
    num_workers: int = 0,
    worker_init_fn=None,
) -> dict:
    """``ConfusionMatrix.compute()`` over the whole ``dataset`` plus ``eval_images``.

    ``dataset`` yields (image float C x H x W, mask int64 H x W). Pass the model itself, not its
    DDP wrapper: ranks see different numbers of windows, and a wrapper's forward may synchronise.
    ``worker_init_fn``: during training, the loop's (``StopSignals.worker_init()``), so that the
    workers leave a stop signal sent to the whole process group to the training process.
    """
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world))),
        batch_size=1,
        num_workers=num_workers,
        worker_init_fn=worker_init_fn,
    )
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index, device)
    images_seen = torch.zeros((), dtype=torch.int64, device=device)
    # The loop's worker_init_fn (training.signals.WorkerSignals) also starts the workers with its signals blocked.
    started = worker_init_fn.started(loader) if hasattr(worker_init_fn, "started") else iter(loader)
    try:
        for images, masks in plain_worker_errors(started):
            images, masks = images.to(device), masks.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = slide_inference(model, images, num_classes, crop, stride)
            matrix.update(logits.argmax(dim=1), masks)
            images_seen += len(images)
    finally:
        model.train(was_training)
    matrix.all_reduce()
    if distributed:
        dist.all_reduce(images_seen)
    return {**matrix.compute(), "eval_images": int(images_seen)}
