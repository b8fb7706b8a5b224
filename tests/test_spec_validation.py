"""The spec is the one place that validates a pre-training run's fields (issue 21): it refuses each bad
value of the method, the NoR variant, the CNP source and the mask ratio, and the model (which trusts its
typed input) builds and trains one step at every value the spec accepts, the range edges included."""

import math

import pytest
import torch

from normae.core.model import MaskedAutoencoderViT, build_mae_from_spec
from normae.errors import ConfigError
from normae.spec import CNP_MODES, DISTILLED_METHODS, METHODS, NOR_VARIANTS, SUPERVISED_METHODS, BenchSpec

from helpers import small_spec

IMG, PATCH = 16, 4  # small_spec's geometry: a 4x4 grid of 16 patches
BATCH, CLASSES = 4, 10


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"method": "simclr"}, "method must be one of"),
        ({"method": "NoR_MAE"}, "method must be one of"),
        ({"nor_variant": "full"}, "nor_variant must be one of"),
        ({"nor_variant": "Diag"}, "nor_variant must be one of"),
        ({"cnp": "pixels"}, "cnp must be one of"),
        ({"mask_ratio": 0.0}, "mask_ratio must be in (0, 1)"),
        ({"mask_ratio": 1.0}, "mask_ratio must be in (0, 1)"),
        ({"mask_ratio": -0.25}, "mask_ratio must be in (0, 1)"),
        ({"mask_ratio": 0.95}, "leaves no visible patch of the 16"),  # int(16 x 0.05) = 0 kept
        ({"mask_ratio": 1e-17}, "removes no patch"),  # 1 - 1e-17 is 1.0 in floating point
        ({"cnp": "authors_code", "cnp_wrap": False}, "keep cnp_wrap true"),
        ({"cnp": "authors_code", "patch_size": 8}, "at least 8 tokens"),  # a 2x2 grid
    ],
)
def test_the_spec_refuses_each_bad_value(settings, expected):
    with pytest.raises(ConfigError, match="invalid pretrain spec") as error:
        small_spec(**settings)
    assert expected in str(error.value)


def test_the_bench_spec_refuses_what_its_models_cannot_build():
    with pytest.raises(ConfigError, match="cnp must be one of"):
        BenchSpec(cnp="pixels")
    with pytest.raises(ConfigError, match="at least 8 tokens"):
        BenchSpec(cnp="authors_code", img_size=32, patch_size=16)
    BenchSpec(cnp="authors_code", img_size=32, patch_size=16, methods="mae,sup_mae")  # no NoR model: no CNP


def one_step(spec) -> float:
    """Build the spec's model as the stage does and take one forward and backward pass; the loss."""
    torch.manual_seed(0)
    teacher = None
    if spec.method in DISTILLED_METHODS:
        teacher = MaskedAutoencoderViT(
            img_size=IMG, patch_size=PATCH, embed_dim=96, depth=8, num_heads=4,
            decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4,
        )  # fmt: skip
    num_classes = CLASSES if spec.method in SUPERVISED_METHODS else None
    model = build_mae_from_spec(spec, spec.image_size, num_classes=num_classes, teacher=teacher)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(BATCH, 3, IMG, IMG, generator=generator)
    noise = torch.rand(BATCH, model.patch_embed.num_patches, generator=generator)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    out = model(images, noise, labels=labels)
    out.loss.backward()
    return out.loss.item()


ACCEPTED = [
    *({"method": method} for method in METHODS),
    *({"nor_variant": variant} for variant in NOR_VARIANTS),
    *({"cnp": mode} for mode in CNP_MODES),
    {"cnp": "authors_code", "patch_size": 4},  # the smallest grid it takes here: 4x4
    {"mask_ratio": 1e-9},  # just above 0: removes one patch
    {"mask_ratio": 1 - 1 / 16},  # keeps exactly one patch
    {"mask_ratio": 0.5},
]


@pytest.mark.parametrize("settings", ACCEPTED, ids=lambda settings: "-".join(f"{k}={v}" for k, v in settings.items()))
def test_the_model_takes_every_value_the_spec_accepts(settings):
    extra = {"teacher": "t.pth", "teacher_model": "vit_micro"} if settings.get("method") in DISTILLED_METHODS else {}
    spec = small_spec(**settings, **extra)  # accepted by the spec
    assert math.isfinite(one_step(spec))
