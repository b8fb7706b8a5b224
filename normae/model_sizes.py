"""The named model sizes and what a step of each costs, torch-free: the model builds from these
shapes, and the planner's device-hour estimate counts FLOPs with them on a login node."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSize:
    embed_dim: int
    depth: int
    num_heads: int
    decoder_embed_dim: int
    decoder_depth: int
    decoder_num_heads: int


# tiny / small / base: the authors' pre-training shapes (decoder depth 12; decoder width 192 / 256 /
# 512 where the paper's Sec. 3.2 says the encoder's D). micro / mini: the CPU scale.
MODEL_SIZES = {
    "vit_micro": ModelSize(64, 4, 4, 64, 2, 4),
    "vit_mini": ModelSize(128, 6, 4, 128, 4, 4),
    "vit_tiny": ModelSize(192, 12, 12, 192, 12, 12),
    "vit_small": ModelSize(384, 12, 6, 256, 12, 8),
    "vit_base": ModelSize(768, 12, 12, 512, 12, 16),
    # MAE's ViT-Large (decoder 512 wide, 8 deep): DMAE's teacher; its encoder is all a teacher uses.
    "vit_large": ModelSize(1024, 24, 16, 512, 8, 16),
}


def blocks_flops(tokens: int, width: int, depth: int) -> float:
    """Forward multiply-adds x 2 of ``depth`` transformer blocks (MLP ratio 4) on ``tokens`` tokens:
    24 N D^2 in the linear layers and 4 N^2 D in attention, the term quadratic in the token count."""
    return depth * (24 * tokens * width**2 + 4 * tokens**2 * width)


def image_flops(size: str, img_size: int, patch_size: int, mask_ratio: float | None = None) -> float:
    """Forward FLOPs per image: MAE pre-training (encoder on the visible tokens, decoder on all) when
    ``mask_ratio`` is given, else the encoder on every token (fine-tuning, probing, k-NN)."""
    shape = MODEL_SIZES[size]
    tokens = (img_size // patch_size) ** 2
    if mask_ratio is None:
        return blocks_flops(tokens + 1, shape.embed_dim, shape.depth)
    visible = int(tokens * (1 - mask_ratio))
    encoder = blocks_flops(visible + 1, shape.embed_dim, shape.depth)
    return encoder + blocks_flops(tokens + 1, shape.decoder_embed_dim, shape.decoder_depth)
