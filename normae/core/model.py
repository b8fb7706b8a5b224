"""ViT encoder and MAE decoder from timm pieces, trained as MAE, NoR-MAE, SupMAE or DMAE (and the
NoR versions of the last two: the same NoR term added to their losses).

Parameter names follow the MAE reference (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks.N``, ``norm``, ``decoder_embed``, ``mask_token``, ``decoder_pos_embed``,
``decoder_blocks.N``, ``decoder_norm``, ``decoder_pred``), so public MAE / NoR-MAE checkpoints
load with ``strict=True`` and the encoder part loads into a timm ``VisionTransformer``. SupMAE's
head (``cls_head.*``) and DMAE's projection (``aligned_feature_projection_heads.*``) keep their public
code's names (``normae.core.auxiliary``) and are left out of the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn as nn
from timm.layers import PatchEmbed, to_2tuple
from timm.models.vision_transformer import Block

from normae.core.auxiliary import (
    AUXILIARY_PREFIXES,
    SupervisedHead,
    TeacherHolder,
    aligned_block_index,
    check_method_needs,
    distillation_loss,
    projection_heads,
    supervised_loss,
    teacher_feature,
    teacher_width,
)
from normae.core.cnp import cnp_source_index
from normae.core.losses import nor_loss, reconstruction_loss
from normae.errors import ConfigError
from normae.model_sizes import MODEL_SIZES
from normae.spec import DISTILLED_METHODS, NOR_METHODS, PAPER_LAMBDA, SUPERVISED_METHODS


@dataclass
class MAEOutput:
    loss: torch.Tensor
    loss_rec: torch.Tensor
    loss_nor: torch.Tensor
    # SupMAE's cross-entropy and DMAE's distillation loss, unweighted (zeros for the other methods).
    loss_sup: torch.Tensor
    loss_distill: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor
    # NoR methods only, for the diagnostics (``normae.core.diagnostics``): the embedded tokens, the kept
    # positions, the token each kept position's CNP branch used, and that branch's prediction.
    tokens: torch.Tensor | None = None
    ids_keep: torch.Tensor | None = None
    cnp_source: torch.Tensor | None = None
    pred_cnp: torch.Tensor | None = None


def sincos_pos_embed(embed_dim: int, grid: tuple[int, int], cls_token: bool = True) -> np.ndarray:
    """Fixed 2-D sin-cos table in the MAE reference's channel order, shape (cls + H*W, embed_dim).

    The first half of the channels encodes the column, the second half the row; each half is
    [sin, cos] of position x 1/10000^(k/(D/4)). timm's own builder orders channels differently.
    """
    if embed_dim % 4:
        raise ValueError(f"sin-cos position embedding needs embed_dim divisible by 4, got {embed_dim}")
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 4, dtype=np.float64) / (embed_dim / 4.0))

    def encode(positions: np.ndarray) -> np.ndarray:
        angles = np.einsum("m,d->md", positions.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    rows, cols = np.meshgrid(np.arange(grid[0], dtype=np.float64), np.arange(grid[1], dtype=np.float64), indexing="ij")
    table = np.concatenate([encode(cols), encode(rows)], axis=1)
    if cls_token:
        table = np.concatenate([np.zeros((1, embed_dim)), table], axis=0)
    return table


def random_masking(tokens: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None):
    """Keep the ``int(L * (1 - mask_ratio))`` tokens of lowest noise, per sample.

    Returns the kept tokens (N, K, D), the mask (N, L; 1 = removed), ``ids_restore`` (N, L) that
    undoes the shuffle, and ``ids_keep`` (N, K).
    """
    batch, length, dim = tokens.shape
    keep = int(length * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(batch, length, device=tokens.device)
    if noise.shape != (batch, length):
        raise ValueError(f"noise must have shape {(batch, length)}, got {tuple(noise.shape)}")
    ids_shuffle = torch.argsort(noise.to(tokens.device), dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
    mask = torch.ones(batch, length, device=tokens.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return kept, mask, ids_restore, ids_keep


class MaskedAutoencoderViT(TeacherHolder):
    """MAE with an optional Neighbour-Repelling second branch, SupMAE head or DMAE teacher.

    NoR methods (``NOR_METHODS``: nor_mae, sup_nor_mae, nor_dmae) run the kept positions'
    closest-neighbour tokens through the same encoder and decoder under no-grad, decode them with
    the same ``ids_restore``, and add ``lam * nor_loss(pred, pred_cnp)`` to the reconstruction loss.
    Supervised methods (sup_mae, sup_nor_mae; ``num_classes`` required, ``labels`` in ``forward``)
    add ``sup_weight * CE(cls_head(latent) / sup_temperature, labels)`` as SupMAE's code does.
    Distilled methods (dmae, nor_dmae; ``teacher_dim`` required, a teacher attached with
    ``attach_teacher``) add ``alpha * L1(normalize(teacher), normalize(projection(student)))`` as
    DMAE's code does (weight 1 there). Details and sources: ``normae.core.auxiliary``; the teacher is
    held outside the module tree and moves with the student (``TeacherHolder``).
    """

    def __init__(
        self,
        img_size=224,
        patch_size=16,
        in_chans=3,
        embed_dim=192,
        depth=12,
        num_heads=12,
        decoder_embed_dim=192,
        decoder_depth=12,
        decoder_num_heads=12,
        mlp_ratio=4.0,
        norm_pix_loss=True,
        mask_ratio=0.75,
        method="mae",
        lam=PAPER_LAMBDA,
        nor_variant="offdiag",
        cnp="paper",
        cnp_wrap=True,
        num_classes: int | None = None,
        sup_weight=0.01,
        sup_temperature=10.0,
        sup_hidden=3072,
        teacher_dim: int | None = None,
        alpha=1.0,
        distill_depth=0.75,
    ):
        super().__init__()
        img_size = to_2tuple(img_size)
        if img_size[0] % patch_size or img_size[1] % patch_size:
            divisors = [p for p in range(1, min(img_size) + 1) if img_size[0] % p == 0 and img_size[1] % p == 0]
            raise ConfigError(
                f"patch size {patch_size} does not divide image size {img_size}; patch sizes that do: {divisors}"
            )
        # method, nor_variant, cnp, cnp_wrap and mask_ratio are the spec's to check (PretrainSpec, BenchSpec)
        check_method_needs(method, num_classes, teacher_dim)
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.norm_pix_loss = norm_pix_loss
        self.mask_ratio = mask_ratio
        self.method, self.lam, self.nor_variant, self.cnp, self.cnp_wrap = method, lam, nor_variant, cnp, cnp_wrap
        self.num_classes, self.sup_weight, self.sup_temperature = num_classes, sup_weight, sup_temperature
        self.teacher_dim, self.alpha, self.distill_depth = teacher_dim, alpha, distill_depth
        norm_layer = partial(nn.LayerNorm, eps=1e-6)

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.grid = self.patch_embed.grid_size
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth)]
        )
        self.norm = norm_layer(embed_dim)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [
                Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
                for _ in range(decoder_depth)
            ]
        )
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans, bias=True)
        if method in SUPERVISED_METHODS:  # before initialize_weights: xavier Linears, as in SupMAE
            self.cls_head = SupervisedHead(embed_dim, num_classes, sup_hidden)
        self.initialize_weights()
        if method in DISTILLED_METHODS:  # after it: PyTorch's default Linear init, as in DMAE
            self.student_block = aligned_block_index(depth, distill_depth)
            self.aligned_feature_projection_heads = projection_heads(embed_dim, teacher_dim)

    def initialize_weights(self):
        self.pos_embed.data.copy_(torch.from_numpy(sincos_pos_embed(self.pos_embed.shape[-1], self.grid)).float()[None])
        self.decoder_pos_embed.data.copy_(
            torch.from_numpy(sincos_pos_embed(self.decoder_pos_embed.shape[-1], self.grid)).float()[None]
        )
        weight = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_layer)

    @staticmethod
    def _init_layer(module):
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def no_weight_decay(self):
        return {"cls_token", "pos_embed", "mask_token", "decoder_pos_embed"}

    def group_matcher(self, coarse=False):
        """Layer groups for timm's layer-wise lr decay: stem, then one group per encoder block."""
        return {
            "stem": r"^cls_token|^pos_embed|^patch_embed",
            "blocks": [(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        }

    def encoder_state_dict(self) -> dict:
        """The encoder's weights under timm ``VisionTransformer`` names (no decoder, no head, no projection)."""
        skip = ("decoder_", "mask_token", *AUXILIARY_PREFIXES)
        return {k: v for k, v in self.state_dict().items() if not k.startswith(skip)}

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, L, p*p*C), channels last within a patch as in the MAE reference."""
        p = self.patch_size
        n, c, h, w = imgs.shape
        x = imgs.reshape(n, c, h // p, p, w // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        p, (gh, gw), c = self.patch_size, self.grid, self.in_chans
        x = patches.reshape(patches.shape[0], gh, gw, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(patches.shape[0], c, gh * p, gw * p)

    def embed(self, imgs: torch.Tensor) -> torch.Tensor:
        """Embedded tokens (patch embedding + position embedding), before masking: (N, L, D)."""
        return self.patch_embed(imgs) + self.pos_embed[:, 1:, :]

    def encode(self, kept_tokens: torch.Tensor) -> torch.Tensor:
        return self.encode_features(kept_tokens)[0]

    def encode_features(
        self, kept_tokens: torch.Tensor, feature_block: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The normed encoder output and the raw output of block ``feature_block`` (None: not kept)."""
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(kept_tokens.shape[0], -1, -1)
        x = torch.cat([cls, kept_tokens], dim=1)
        feature = None
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == feature_block:
                feature = x
        return self.norm(x), feature

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predicted patches for all L positions, (N, L, p*p*C)."""
        x = self.decoder_embed(latent)
        batch, length = ids_restore.shape
        mask_tokens = self.mask_token.expand(batch, length + 1 - x.shape[1], -1)
        shuffled = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        restored = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1, :], restored], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

    def cnp_prediction(self, tokens: torch.Tensor, ids_keep: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """The stop-gradient siamese branch: decoder output for the kept positions' CNP tokens."""
        return self.cnp_branch(tokens, ids_keep, ids_restore)[0]

    def cnp_branch(
        self, tokens: torch.Tensor, ids_keep: torch.Tensor, ids_restore: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``cnp_prediction`` and the (N, K) index of the token that stood in for each kept position."""
        with torch.no_grad():
            tokens = tokens.detach()
            kept_source = cnp_source_index(tokens, self.grid, mode=self.cnp, wrap=self.cnp_wrap, positions=ids_keep)
            cnp_tokens = torch.gather(tokens, 1, kept_source.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
            return self.decode(self.encode(cnp_tokens), ids_restore), kept_source

    def forward(
        self, imgs: torch.Tensor, noise: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> MAEOutput:
        """loss = loss_rec + lam * loss_nor + sup_weight * loss_sup + alpha * loss_distill, each term
        for the methods that have it. ``labels``: the images' classes, for the supervised methods."""
        supervised, distilled = self.method in SUPERVISED_METHODS, self.method in DISTILLED_METHODS
        if supervised and labels is None:
            raise ConfigError(f"method {self.method} needs labels: the pre-training set returns none")
        if distilled and self.teacher is None:
            raise ConfigError(f"method {self.method} needs a teacher: load one (--teacher) and attach_teacher it")
        tokens = self.embed(imgs)
        kept, mask, ids_restore, ids_keep = random_masking(tokens, self.mask_ratio, noise)
        # encode_features only where a block's output is needed: ``encode`` stays the one path otherwise.
        latent, feature = self.encode_features(kept, self.student_block) if distilled else (self.encode(kept), None)
        pred = self.decode(latent, ids_restore)
        loss = loss_rec = reconstruction_loss(pred, self.patchify(imgs), mask, norm_pix=self.norm_pix_loss)
        loss_nor = loss_sup = loss_distill = torch.zeros((), device=imgs.device)
        branch = {}
        if self.method in NOR_METHODS:
            pred_cnp, cnp_source = self.cnp_branch(tokens, ids_keep, ids_restore)
            loss_nor = nor_loss(pred, pred_cnp, variant=self.nor_variant, standardize=self.norm_pix_loss)
            loss = loss + self.lam * loss_nor
            branch = {"tokens": tokens.detach(), "ids_keep": ids_keep, "cnp_source": cnp_source, "pred_cnp": pred_cnp}
        if supervised:
            loss_sup = supervised_loss(self.cls_head(latent), labels, self.sup_temperature)
            loss = loss + self.sup_weight * loss_sup
        if distilled:
            target = teacher_feature(self.teacher, imgs, ids_keep, self.teacher_block)
            loss_distill = distillation_loss(target, self.aligned_feature_projection_heads[0](feature))
            loss = loss + self.alpha * loss_distill
        return MAEOutput(
            loss=loss, loss_rec=loss_rec, loss_nor=loss_nor, loss_sup=loss_sup, loss_distill=loss_distill,
            pred=pred, mask=mask, **branch,
        )  # fmt: skip


# The PretrainSpec fields that are model options under the same name.
SPEC_OPTIONS = (
    "patch_size", "mask_ratio", "norm_pix_loss", "method", "lam", "nor_variant", "cnp", "cnp_wrap",
    "sup_weight", "sup_temperature", "sup_hidden", "alpha", "distill_depth",
)  # fmt: skip


def build_mae(size: str = "vit_tiny", **kwargs) -> MaskedAutoencoderViT:
    """A named size (``MODEL_SIZES``) with the given image, patch, method and loss options."""
    if size not in MODEL_SIZES:
        raise ConfigError(f"unknown model size {size!r}; choose one of {sorted(MODEL_SIZES)}")
    shape = MODEL_SIZES[size]
    return MaskedAutoencoderViT(**{**shape.__dict__, **kwargs})


def build_mae_from_spec(
    spec, img_size: int, num_classes: int | None = None, teacher: MaskedAutoencoderViT | None = None
) -> MaskedAutoencoderViT:
    """The model that a ``PretrainSpec`` describes, at ``img_size`` pixels.

    ``img_size`` is given because a spec may leave it to the data set (``spec.img_size`` None).
    Pre-training, the PCA analysis and the benchmark all build their model here. Supervised methods
    need ``num_classes``. Distilled methods size their projection by ``teacher`` (attached here) or,
    without one (loading a checkpoint), by ``spec.teacher_model``'s width.
    """
    teacher_dim = teacher_width(teacher, spec.teacher_model) if spec.method in DISTILLED_METHODS else None
    options = {name: getattr(spec, name) for name in SPEC_OPTIONS}
    model = build_mae(spec.model, img_size=img_size, num_classes=num_classes, teacher_dim=teacher_dim, **options)
    if teacher is not None:
        model.attach_teacher(teacher)
    return model
