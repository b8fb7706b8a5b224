"""The specs' vocabularies, each defined once as a ``Literal`` with its tuple derived from it: methods and
what each adds to MAE, CNP modes, NoR variants, stages and precisions (torch-free). The model, the
planner and the command line read them from here (through ``normae.spec``)."""

from __future__ import annotations

from typing import Literal, get_args

Method = Literal["mae", "nor_mae", "sup_mae", "sup_nor_mae", "dmae", "nor_dmae"]
CnpMode = Literal["paper", "authors_code", "random"]
NorVariant = Literal["offdiag", "diag", "token"]
Stage = Literal["pretrain", "finetune", "linprobe", "knn", "segment", "bench"]
Amp = Literal["auto", "bf16", "fp16", "none"]
Loader = Literal["torchvision", "dali"]  # how pre-training images are decoded and cropped (PIL or NVIDIA DALI)

METHODS: tuple[str, ...] = get_args(Method)
# What each method adds to MAE: the NoR term (lambda), SupMAE's supervised branch, DMAE's distillation.
BASE_OF_NOR: dict[str, str] = {"nor_mae": "mae", "sup_nor_mae": "sup_mae", "nor_dmae": "dmae"}  # NoR method -> without
NOR_METHODS: tuple[str, ...] = tuple(BASE_OF_NOR)
SUPERVISED_METHODS: tuple[str, ...] = ("sup_mae", "sup_nor_mae")
DISTILLED_METHODS: tuple[str, ...] = ("dmae", "nor_dmae")
CNP_MODES: tuple[str, ...] = get_args(CnpMode)
NOR_VARIANTS: tuple[str, ...] = get_args(NorVariant)
STAGES: tuple[str, ...] = get_args(Stage)
AMP_MODES: tuple[str, ...] = get_args(Amp)
LOADERS: tuple[str, ...] = get_args(Loader)
