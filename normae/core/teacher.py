"""DMAE's teacher: a frozen MAE encoder read from a checkpoint (``--teacher``, ``--teacher-model``).

A module of its own because it builds the model: ``normae.core.model`` imports the branches from
``normae.core.auxiliary``, so that module cannot import the model back.
"""

from __future__ import annotations

from pathlib import Path

from normae.core.classifier import read_checkpoint
from normae.core.model import MaskedAutoencoderViT, build_mae
from normae.errors import CheckpointError, ConfigError


def load_teacher(path: str | Path, model_name: str, img_size: int, patch_size: int) -> MaskedAutoencoderViT:
    """The frozen teacher (no grad, eval mode) whose encoder is read from ``path``.

    ``path``: a public MAE checkpoint ``{'model': state_dict}`` with MAE's parameter names (e.g. MAE's
    ViT-Large, DMAE's teacher), or one of our ``checkpoint.pt`` files, or its run folder; read by
    ``torch.load(..., map_location="cpu", weights_only=True)``. The encoder keys (``patch_embed``,
    ``cls_token``, ``pos_embed``, ``blocks.*``, ``norm``) must all be there with ``model_name``'s
    shapes at ``img_size`` / ``patch_size`` (a different token grid is an error, not resampled);
    decoder keys, SupMAE heads and DMAE projections are ignored (only the encoder is used). DMAE's
    code loads its teacher with ``strict=False``, which would let a missing key pass unnoticed.
    """
    try:  # the file first: a missing one fails before a large teacher is built
        state, spec = read_checkpoint(path)
    except CheckpointError as error:
        raise CheckpointError(f"--teacher {path}: {error}") from None
    try:
        teacher = build_mae(model_name, img_size=img_size, patch_size=patch_size)
    except ConfigError as error:
        raise ConfigError(f"--teacher-model {model_name}: {error}") from None
    if spec.get("model") not in (None, model_name):
        raise ConfigError(
            f"--teacher {path} is a {spec['model']} run but --teacher-model is {model_name}: give its model size"
        )
    expected = teacher.encoder_state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise CheckpointError(
            f"--teacher {path} lacks {len(missing)} encoder keys of a {model_name} (e.g. {missing[:3]}): "
            "it must hold an MAE encoder under MAE's parameter names (check --teacher-model)"
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape
    ]
    if wrong:
        raise ConfigError(
            f"--teacher {path} does not fit --teacher-model {model_name} at {img_size} px, patch {patch_size}: "
            f"{'; '.join(wrong[:3])} (the teacher needs the student's patch size and image size)"
        )
    result = teacher.load_state_dict({key: state[key] for key in expected}, strict=False)
    assert not result.unexpected_keys and set(result.missing_keys).isdisjoint(expected), result
    return teacher.requires_grad_(False).eval()
