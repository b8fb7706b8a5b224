"""UperNet on a plain ViT for ADE20K semantic segmentation, as MAE and BEiT evaluate their encoders.

The network is BEiT's ``semantic_segmentation`` setup (MAE reuses it): the pre-trained ViT gives
the tokens of four evenly spaced blocks as stride-``patch`` maps, a hand-written pyramid
(``FeaturePyramid``) turns them into strides of patch/4, patch/2, patch and 2 x patch pixels (4, 8,
16, 32 at patch 16), a UperNet decoder fuses them, and mmseg's heads classify: the main head on the
decoder, an auxiliary FCN head (loss weight 0.4) on the third level.

Why these pieces:

* the encoder is timm's ``VisionTransformer`` shaped as ``normae.core.classifier.build_classifier``
  builds it, with ``dynamic_img_size`` so that any multiple of the patch size goes through; its
  final norm, ``fc_norm`` and head never run here and are pruned, so DDP finds no unused parameter.
* the decoder is segmentation-models-pytorch's ``UPerNetDecoder``. smp's own ``UPerNet`` model
  cannot take a plain ViT: its timm universal encoder accepts only backbones whose features
  have strides 4, 8, 16, 32 (or 2, 4, ...) and refuses a single-stride model ("Unsupported model
  downsampling pattern"). So its decoder runs on our pyramid. Unlike mmseg's UPerHead, smp's
  decoder puts a LayerNorm on each input level first; the rest (PPM with scales 1, 2, 3, 6, 1x1
  laterals, 3x3 FPN convs, 3x3 fusion) is mmseg's.
* no maintained library offers BEiT's pyramid for a plain ViT; it is 15 lines.

Layer-wise lr decay follows BEiT's ``LayerDecayOptimizerConstructor`` (``param_groups``): the
decoder and heads are the top layer (scale 1), block i gets ``layer_decay ** (depth - i)``, the
patch and position embeddings ``layer_decay ** (depth + 1)``, as ``normae.stages.transfer`` scales
a classifier's blocks.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from segmentation_models_pytorch.base.initialization import initialize_decoder
from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder
from timm.models.vision_transformer import VisionTransformer
from timm.optim import param_groups_layer_decay

from normae.core.classifier import build_classifier, load_encoder
from normae.errors import CheckpointError, ConfigError

# The blocks BEiT's and MAE's ADE20K configs take (``out_indices``) for ViT-B/S/T (12 blocks) and ViT-L (24).
BEIT_OUT_INDICES = {12: (3, 5, 7, 11), 24: (7, 11, 15, 23)}
# mmseg's FCNHead in BEiT's config reads the third pyramid level (``in_index=2``, stride 16).
AUX_LEVEL = 2


def pyramid_block_indices(depth: int) -> tuple[int, int, int, int]:
    """The block whose output feeds each of the four pyramid levels (0-based, shallow to deep).

    Depth 12 and 24: BEiT's / MAE's configs. Other depths: the ends of the four quarters,
    ``depth * (i + 1) // 4 - 1``, which are distinct for depth >= 4 and always end at the last
    block. Below 4 blocks the quarters collapse: indices are clamped at block 0 and levels share a
    block (depth 2 -> (0, 0, 0, 1)); ``ViTUperNet`` asks timm for each block once.
    """
    if depth < 1:
        raise ConfigError(f"a ViT needs at least one block, got depth {depth}")
    if depth in BEIT_OUT_INDICES:
        return BEIT_OUT_INDICES[depth]
    first, second, third, fourth = (max(depth * (i + 1) // 4 - 1, 0) for i in range(4))
    return first, second, third, fourth


def build_encoder(size: str, img_size: int, patch_size: int, drop_path: float) -> VisionTransformer:
    """The classifier's ViT without a head, taking any image size (sliding windows, padded crops)."""
    return build_classifier(size, img_size, patch_size, 0, drop_path, "avg", dynamic_img_size=True)


class FeaturePyramid(nn.Module):
    """BEiT's multi-scale adapter: four same-stride ViT maps to strides /4, /8, /16, /32 of the image.

    Relative to the token grid: x4 up (two 2x2 transposed convs with BatchNorm and GELU between,
    BEiT's ``fpn1``), x2 up (``fpn2``), as is (``fpn3``), /2 by 2x2 max-pooling (``fpn4``).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.up4 = nn.Sequential(
            nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2),
            nn.BatchNorm2d(dim),
            nn.GELU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2),
        )
        self.up2 = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
        self.same = nn.Identity()
        self.down2 = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [op(feature) for op, feature in zip((self.up4, self.up2, self.same, self.down2), features, strict=True)]


class ViTUperNet(nn.Module):
    """ViT encoder -> ``FeaturePyramid`` -> smp's ``UPerNetDecoder`` -> main and auxiliary heads.

    ``forward`` returns (main logits, auxiliary logits), both N x num_classes x H x W (bilinear,
    align_corners=False, as mmseg resizes logits to the label). Inputs must be multiples of the patch size.
    """

    def __init__(
        self,
        size: str,
        img_size: int,
        patch_size: int,
        num_classes: int,
        *,
        drop_path: float = 0.1,
        decoder_channels: int = 512,
        aux_channels: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        if img_size % patch_size:
            raise ConfigError(f"img_size {img_size} is not a multiple of patch_size {patch_size}: pick a multiple")
        self.patch_size = patch_size
        self.num_classes = num_classes
        self.encoder = build_encoder(size, img_size, patch_size, drop_path)
        self.out_indices = pyramid_block_indices(len(self.encoder.blocks))
        # timm takes each block once; levels that share a block (depth < 4) look it up.
        self.taken_blocks = sorted(set(self.out_indices))
        self.encoder.prune_intermediate_layers(self.taken_blocks, prune_norm=True, prune_head=True)
        dim = self.encoder.embed_dim
        self.pyramid = FeaturePyramid(dim)
        # smp's channel list is for strides [1, 2, 4, 8, 16, 32] and skips the first two.
        self.decoder = UPerNetDecoder(encoder_channels=[3, 0, dim, dim, dim, dim], decoder_channels=decoder_channels)
        self.head = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(decoder_channels, num_classes, kernel_size=1))
        self.aux_head = nn.Sequential(
            nn.Conv2d(dim, aux_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(aux_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(aux_channels, num_classes, kernel_size=1),
        )
        # smp's models initialise their decoder this way; mmseg starts each conv_seg at N(0, 0.01), bias 0.
        initialize_decoder(self.decoder)
        initialize_decoder(self.aux_head)
        for classifier in (self.head[-1], self.aux_head[-1]):
            nn.init.normal_(classifier.weight, std=0.01)
            nn.init.zeros_(classifier.bias)

    def pyramid_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The four pyramid levels: strides of patch/4, patch/2, patch and 2 x patch pixels (4 ... 32 at patch 16)."""
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ConfigError(
                f"input of {height}x{width} pixels is not a multiple of patch size {self.patch_size}: "
                "pad or crop it to a multiple (slide_inference pads)"
            )
        blocks = self.encoder.forward_intermediates(
            images, indices=self.taken_blocks, intermediates_only=True, norm=False
        )
        by_block = dict(zip(self.taken_blocks, blocks, strict=True))
        return self.pyramid([by_block[index] for index in self.out_indices])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        levels = self.pyramid_levels(images)
        decoded = self.decoder([images, images.new_empty(0), *levels])
        size = images.shape[-2:]
        main = F.interpolate(self.head(decoded), size=size, mode="bilinear", align_corners=False)
        aux = F.interpolate(self.aux_head(levels[AUX_LEVEL]), size=size, mode="bilinear", align_corners=False)
        return main, aux


def segmentation_loss(
    outputs: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor, ignore_index: int = 255, aux_weight: float = 0.4
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CE(main) + ``aux_weight`` x CE(aux), each the mean over the pixels whose target is not ``ignore_index``.

    mmseg's ``avg_non_ignore=True`` (the mean PyTorch's ``cross_entropy`` takes); a batch with no
    labelled pixel gives 0, not NaN. The metrics are detached 0-d tensors: no host sync in a step.
    """
    main, aux = outputs
    labelled = (target != ignore_index).sum().clamp(min=1)

    def mean_ce(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum") / labelled

    loss_main, loss_aux = mean_ce(main), mean_ce(aux)
    loss = loss_main + aux_weight * loss_aux
    return loss, {"loss_main": loss_main.detach(), "loss_aux": loss_aux.detach()}


def param_groups(model: ViTUperNet, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups with ``lr_scale`` (the loop multiplies each group's lr by it) as BEiT's segmentation.

    The encoder's groups are timm's ``param_groups_layer_decay`` (weight decay off for 1-D
    parameters and the encoder's ``no_weight_decay()``), times one more ``layer_decay``: timm makes
    the pruned encoder's last block its top layer (scale 1), BEiT puts the decoder above it. Pyramid,
    decoder and heads: scale 1, weight decay on weights of 2 or more dimensions only.
    """
    groups = param_groups_layer_decay(
        model.encoder, weight_decay, model.encoder.no_weight_decay(), layer_decay=layer_decay
    )
    for group in groups:
        group["lr_scale"] *= layer_decay
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and not name.startswith("encoder."):
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups.append({"lr_scale": 1.0, "weight_decay": weight_decay, "params": decay})
    groups.append({"lr_scale": 1.0, "weight_decay": 0.0, "params": no_decay})
    return [group for group in groups if group["params"]]


def load_pretrained(model: ViTUperNet, state: dict, source: str) -> None:
    """Load a pre-training (or fine-tuned classifier) state dict into ``model``'s encoder.

    ``normae.core.classifier.encoder_weights`` semantics: decoder, auxiliary and head keys dropped,
    the final norm dropped (the encoder's is pruned), patch embedding and position embedding
    resampled to the model's kernel and grid (224 px / 16 = 14 x 14 -> 512 px = 32 x 32).
    ``source`` names the file in the one-line ``CheckpointError`` when the state does not fit.
    """
    try:
        load_encoder(model.encoder, state)
    except CheckpointError as error:
        raise CheckpointError(f"{source} cannot initialise the segmentation encoder: {error}") from None
