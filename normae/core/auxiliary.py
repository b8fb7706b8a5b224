"""The branches that SupMAE and DMAE add to MAE: a supervised head and feature distillation.

SupMAE (Liang et al. 2022, public code ``enyac-group/supmae``, ``models_supmae.py`` and
``engine_pretrain.py``): a classifier on the encoder's output after its final norm, the mean of the
visible patch tokens (cls excluded, the ``--global_pool`` of the recommended command), an MLP
``Linear(D, 3072) -> BatchNorm1d -> ReLU -> Linear(3072, classes)`` named ``cls_head``, and
``cls_loss_ratio * CE(logits / temperature, labels)`` with ratio 0.01 and temperature 10.

DMAE (Bai et al. 2023, public code ``UCSC-VLAA/DMAE``, ``models_mae_distill.py`` and
``engine_distill.py``): the student's block output at 3/4 of its depth (0-based index 8 of 12),
before the final norm, projected by ``aligned_feature_projection_heads.0 = Linear(D_s, D_t)``, is
pulled towards a frozen MAE teacher's block output at 3/4 of its depth (17 of 24) on the same
visible patches; the distance is L1, averaged over batch x tokens x channels with the cls token
included, between per-token L2-normalised vectors. The code adds it with weight 1 (no option).

This module holds the torch pieces and the checks; the model (``normae.core.model``) holds the
head, the projection and the teacher, and ``normae.core.teacher`` reads a teacher's checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from normae.errors import ConfigError
from normae.model_sizes import MODEL_SIZES
from normae.spec import DISTILLED_METHODS, SUPERVISED_METHODS

# State-dict prefixes of the SupMAE head and the DMAE projection: pre-training only, never part of
# the encoder that fine-tuning, linear probing and k-NN load (DMAE's and SupMAE's names).
AUXILIARY_PREFIXES = ("cls_head.", "aligned_feature_projection_heads.")


def check_method_needs(method: str, num_classes: int | None, teacher_dim: int | None) -> None:
    """A supervised method needs the number of classes, a distilled one the teacher's width."""
    if method in SUPERVISED_METHODS and num_classes is None:
        raise ConfigError(f"method {method} needs num_classes: the pre-training set's number of classes")
    if method in DISTILLED_METHODS and teacher_dim is None:
        raise ConfigError(f"method {method} needs teacher_dim: the width of the teacher (its --teacher-model)")


class SupervisedHead(nn.Sequential):
    """SupMAE's ``cls_head``: mean over the visible patch tokens of the normed encoder output, then
    ``Linear(dim, hidden) -> BatchNorm1d(hidden) -> ReLU -> Linear(hidden, num_classes)``.

    As an ``nn.Sequential`` its parameters are named as SupMAE's (``cls_head.0.*`` the first Linear,
    ``cls_head.1.*`` the BatchNorm, ``cls_head.3.*`` the last Linear). ``hidden=0`` gives a single
    Linear, named ``cls_head.0.*`` here (SupMAE's linear variant names it ``cls_head.*``; its
    released setting is the MLP). The Linears take the model's xavier init: the model builds the
    head before ``initialize_weights``, as SupMAE does; BatchNorm keeps PyTorch's defaults.
    """

    def __init__(self, dim: int, num_classes: int, hidden: int = 3072):
        if num_classes < 1 or hidden < 0:
            raise ConfigError(
                f"the supervised head needs num_classes >= 1 and hidden >= 0, got {num_classes}, {hidden}"
            )
        if hidden:
            layers: list[nn.Module] = [
                nn.Linear(dim, hidden),
                nn.BatchNorm1d(hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, num_classes),
            ]
        else:
            layers = [nn.Linear(dim, num_classes)]
        super().__init__(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Logits (N, classes) from the encoder output (N, 1 + K, D) after its final norm."""
        return super().forward(latent[:, 1:, :].mean(dim=1))


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupMAE's ``CrossEntropyLoss(ignore_index=-100)(logits / temperature, labels)``, in float32."""
    return F.cross_entropy(logits.float() / temperature, labels.long(), ignore_index=-100)


def aligned_block_index(depth: int, distill_depth: float, who: str = "student") -> int:
    """The 0-based block whose output is distilled: ``round(depth * distill_depth) - 1`` (Python's
    round). DMAE's ``pretrain.sh``: 8 of 12 for the student and 17 of 24 for the teacher, both 3/4."""
    index = round(depth * distill_depth) - 1
    if not 0 <= index < depth:
        raise ConfigError(
            f"distill_depth {distill_depth} picks block {index} of the {who}'s {depth} (0-based): "
            f"choose it in (0, 1] so that round({depth} x distill_depth) is between 1 and {depth}"
        )
    return index


def projection_heads(student_dim: int, teacher_dim: int) -> nn.ModuleList:
    """DMAE's default ``fc-1layer`` projector: one ``Linear(student_dim, teacher_dim)`` in a ModuleList
    (names ``aligned_feature_projection_heads.0.*``). The model builds it after its
    ``initialize_weights``, so it keeps PyTorch's default Linear init, as in DMAE."""
    return nn.ModuleList([nn.Linear(student_dim, teacher_dim)])


def check_teacher_fits(student: nn.Module, teacher: nn.Module, teacher_dim: int, distill_depth: float) -> int:
    """The teacher's aligned block index, after checking that the teacher sees the student's patches:
    the same patch size and image grid (the same ``ids_keep`` must mean the same pixels) and the
    width the student's projection was built for."""
    ours = (student.patch_size, tuple(student.grid))
    theirs = (getattr(teacher, "patch_size", None), tuple(getattr(teacher, "grid", ())))
    if not hasattr(teacher, "blocks") or theirs != ours:
        raise ConfigError(
            f"the teacher (patch {theirs[0]}, grid {theirs[1]}) does not fit the student (patch {ours[0]}, "
            f"grid {ours[1]}): the teacher must use the student's patch size and image size"
        )
    width = teacher.pos_embed.shape[-1]
    if width != teacher_dim:
        raise ConfigError(
            f"the teacher is {width} wide but the student's projection was built for {teacher_dim}: "
            "build the student with teacher_dim = the teacher's width (its --teacher-model)"
        )
    return aligned_block_index(len(teacher.blocks), distill_depth, who="teacher")


def teacher_width(teacher: nn.Module | None, teacher_model: str) -> int:
    """The width the student's projection maps to: the teacher's, or its model size's when the teacher
    is not loaded (a checkpoint of a distilled run read back for analysis)."""
    if teacher is not None:
        return teacher.pos_embed.shape[-1]
    if teacher_model not in MODEL_SIZES:
        raise ConfigError(f"unknown --teacher-model {teacher_model!r}; choose one of {sorted(MODEL_SIZES)}")
    return MODEL_SIZES[teacher_model].embed_dim


class TeacherHolder(nn.Module):
    """A module that can hold a frozen teacher outside its module tree (the base of the MAE model).

    The teacher sits in a plain list, so it is not in ``state_dict()``, ``parameters()``, the
    optimiser or DDP's view, and ``train()`` never reaches it: it stays in eval mode. ``_apply`` (what
    ``.to()``, ``.cuda()``, ``.half()`` run) is extended to it, so it moves with the student; a
    SyncBatchNorm conversion of the student leaves it alone.
    """

    def __init__(self):
        super().__init__()
        self._teacher: list[nn.Module] = []

    @property
    def teacher(self) -> nn.Module | None:
        """The frozen teacher of a distilled method, once attached."""
        return self._teacher[0] if self._teacher else None

    def attach_teacher(self, teacher: nn.Module) -> None:
        """Freeze ``teacher`` (no grad, eval mode), check that it fits (``check_teacher_fits``), move it to
        the student's device and keep it outside the module tree."""
        method = getattr(self, "method", None)
        if method not in DISTILLED_METHODS:
            raise ConfigError(
                f"method {method} takes no teacher; the distilled ones are {', '.join(DISTILLED_METHODS)}"
            )
        self.teacher_block = check_teacher_fits(self, teacher, self.teacher_dim, self.distill_depth)
        teacher.requires_grad_(False).eval()
        self._teacher[:] = [teacher.to(self.pos_embed.device)]

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for teacher in self._teacher:  # .to(device), .cuda(), .half(): the teacher goes along
            teacher._apply(fn, recurse)
        return self


@torch.no_grad()
def teacher_feature(teacher: nn.Module, imgs: torch.Tensor, ids_keep: torch.Tensor, index: int) -> torch.Tensor:
    """The frozen teacher's output of block ``index`` (before its final norm), float32, (N, 1 + K, D_t).

    The teacher embeds the images with its own patch and position embedding, keeps the student's
    visible patches (the same ``ids_keep``, as DMAE's student gathers the teacher's), prepends its
    own cls token and runs its blocks up to ``index``. DMAE's code runs the teacher to the end (all
    blocks, the norm and the decoder); the later blocks cannot change the output of an earlier one,
    so stopping there gives the same feature for less work (the paper's partial execution).
    """
    tokens = teacher.embed(imgs)
    kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    cls = (teacher.cls_token + teacher.pos_embed[:, :1, :]).expand(kept.shape[0], -1, -1)
    x = torch.cat([cls, kept], dim=1)
    for block in teacher.blocks[: index + 1]:
        x = block(x)
    return x.float()


def distillation_loss(teacher_feat: torch.Tensor, student_proj: torch.Tensor) -> torch.Tensor:
    """DMAE's ``L1Loss()(F.normalize(teacher, dim=-1), F.normalize(projected student, dim=-1))``: the mean
    over batch x tokens x channels (cls token included). Both sides are normalised in float32 (DMAE
    casts the teacher's feature to float32 and leaves the student's in autocast precision)."""
    target = F.normalize(teacher_feat.detach().float(), dim=-1)
    return F.l1_loss(F.normalize(student_proj.float(), dim=-1), target)
