"""ViT classifier for fine-tuning and linear probing, and loading pre-trained encoders into it.

The classifier is a timm ``VisionTransformer``, so its state dict loads with
``timm.create_model(..., checkpoint_path=...)``. Fine-tuning follows MAE: global average pooling
with ``fc_norm`` (the pre-trained final ``norm`` is dropped), head initialised with std 2e-5.
Linear probing follows MAE too: the cls token through the pre-trained ``norm``, then BatchNorm
without affine parameters and a linear head; everything but the head is frozen.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from timm.layers import resample_abs_pos_embed, resample_patch_embed, trunc_normal_
from timm.models.vision_transformer import VisionTransformer

from normae.core.auxiliary import AUXILIARY_PREFIXES
from normae.errors import CheckpointError, ConfigError, plain_worker_errors
from normae.model_sizes import MODEL_SIZES
from normae.paths import RunFolder

# Keys of an MAE / NoR-MAE pre-training state dict that are not part of the encoder (SupMAE's head and
# DMAE's projection, AUXILIARY_PREFIXES, are pre-training only too).
DECODER_PREFIXES = ("decoder_", "mask_token")


def build_classifier(
    size: str,
    img_size: int,
    patch_size: int,
    num_classes: int,
    drop_path: float = 0.0,
    global_pool: str = "avg",
    dynamic_img_size: bool = False,
) -> VisionTransformer:
    """timm's ViT at one of our sizes; ``num_classes=0``: no head (an encoder, e.g. segmentation's);
    ``dynamic_img_size``: any image size whose sides the patch divides (the position embedding resampled)."""
    if size not in MODEL_SIZES:
        raise ConfigError(f"unknown model size {size!r}; choose one of {sorted(MODEL_SIZES)}")
    shape = MODEL_SIZES[size]
    model = VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        num_classes=num_classes,
        global_pool=global_pool,
        embed_dim=shape.embed_dim,
        depth=shape.depth,
        num_heads=shape.num_heads,
        drop_path_rate=drop_path,
        dynamic_img_size=dynamic_img_size,
    )
    if num_classes:
        trunc_normal_(model.head.weight, std=2e-5)
        nn.init.zeros_(model.head.bias)
    return model


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(state dict, our pre-training spec or {}) from a checkpoint file or a run folder.

    Accepts this project's ``checkpoint.pt`` (or its run folder), and the public MAE / NoR-MAE
    format ``{'model': state_dict}`` (argparse ``args`` inside are allowed; nothing else that is
    not plain data is unpickled).
    """
    path = Path(path)
    if path.is_dir():
        path = RunFolder(path).checkpoint_path
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "expected a file written by torch.save holding {'model': state_dict} with MAE parameter names"
        ) from error
    state = content.get("model", content) if isinstance(content, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict (expected {{'model': state_dict}} or a bare state dict)")
    spec = content.get("spec", {}) if isinstance(content.get("spec"), dict) else {}
    return state, spec


def encoder_weights(state: dict, model: VisionTransformer) -> dict:
    """The encoder part of a pre-training state dict, resized to ``model``'s patch and token grid."""
    # A fine-tuned checkpoint's head belongs to its own classes; the new model starts its own.
    weights = {k: v for k, v in state.items() if not k.startswith(DECODER_PREFIXES + AUXILIARY_PREFIXES + ("head.",))}
    if "patch_embed.proj.weight" not in weights or "pos_embed" not in weights:
        raise CheckpointError("the checkpoint has no encoder (patch_embed.proj.weight and pos_embed are missing)")
    expected_dim = model.pos_embed.shape[-1]
    if weights["pos_embed"].shape[-1] != expected_dim:
        raise CheckpointError(
            f"the checkpoint's encoder is {weights['pos_embed'].shape[-1]} wide but the model is {expected_dim}: "
            "pick the matching --model"
        )
    kernel = model.patch_embed.proj.weight.shape[-2:]
    if weights["patch_embed.proj.weight"].shape[-2:] != kernel:
        weights["patch_embed.proj.weight"] = resample_patch_embed(weights["patch_embed.proj.weight"], list(kernel))
    grid = list(model.patch_embed.grid_size)
    if weights["pos_embed"].shape[1] != model.pos_embed.shape[1]:
        weights["pos_embed"] = resample_abs_pos_embed(weights["pos_embed"], grid, num_prefix_tokens=1)
    for name in ("norm", "fc_norm"):
        if isinstance(getattr(model, name), nn.Identity):
            weights = {k: v for k, v in weights.items() if not k.startswith(name + ".")}
    return weights


def load_encoder(model: VisionTransformer, state: dict) -> None:
    """Load pre-trained encoder weights; only the head and fc_norm may stay as initialised."""
    result = model.load_state_dict(encoder_weights(state, model), strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("head.", "fc_norm."))]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"the checkpoint does not fit the {type(model).__name__}: missing {missing[:6]}, "
            f"unexpected {result.unexpected_keys[:6]}"
        )


def make_linear_probe(model: VisionTransformer) -> list[nn.Parameter]:
    """Freeze everything, put BatchNorm (no affine) before the head; returns the trainable parameters.

    The head restarts from std 0.01 as in MAE's linear probing: LARS scales each update by the
    weight's norm, so fine-tuning's 2e-5 would leave the head nearly still.
    """
    for parameter in model.parameters():
        parameter.requires_grad = False
    trunc_normal_(model.head.weight, std=0.01)
    model.head = nn.Sequential(nn.BatchNorm1d(model.head.in_features, affine=False, eps=1e-6), model.head)
    for parameter in model.head.parameters():
        parameter.requires_grad = True
    return list(model.head.parameters())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset,
    batch_size: int,
    device: torch.device,
    amp_dtype=None,
    num_workers: int = 0,
    worker_init_fn=None,
) -> dict:
    """Top-1 / top-5 accuracy (%) over the whole set; with DDP each rank takes every world_size-th image.

    ``worker_init_fn``: during training, the loop's (``StopSignals.worker_init()``), so that the workers
    leave a stop signal sent to the whole process group to the training process.
    """
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    indices = list(range(rank, len(dataset), world))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, indices),
        batch_size=batch_size,
        num_workers=num_workers,
        worker_init_fn=worker_init_fn,
    )
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.float64, device=device)
    # The loop's worker_init_fn (training.signals.WorkerSignals) also starts the workers with its signals blocked.
    started = worker_init_fn.started(loader) if hasattr(worker_init_fn, "started") else iter(loader)
    for images, targets in plain_worker_errors(started):
        images, targets = images.to(device), targets.to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)
        top5 = logits.float().topk(min(5, logits.shape[-1]), dim=-1).indices
        hits = top5 == targets[:, None]
        counts += torch.stack(
            [hits[:, 0].sum(), hits.any(dim=-1).sum(), torch.tensor(len(targets), device=device)]
        ).double()
    if distributed:
        dist.all_reduce(counts)
    model.train(was_training)
    top1, top5, total = counts.tolist()
    return {"top1": 100.0 * top1 / total, "top5": 100.0 * top5 / total, "eval_images": int(total)}
