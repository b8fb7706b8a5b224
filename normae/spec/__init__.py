"""Run specifications: everything that decides what a run computes, as plain JSON-able data.

One module per kind of run: ``pretrain`` (MAE and its variants), ``evaluation`` (fine-tuning, linear
probing, k-NN, segmentation: an encoder from ``init`` evaluated on a downstream set), ``bench`` (the
cost measurement); ``vocabulary`` defines the Literal vocabularies once, ``base`` what every spec shares
(serialisation, digest, validation; each class registers its stage in ``SPEC_CLASSES``), ``checks`` the
field checks. The specs and their vocabularies are re-exported here: read specs from ``normae.spec``.
Two modules about a spec are read from themselves: ``batching`` (how the hardware reaches a spec's
global batch: processes, forward passes, accumulation; the launcher checks it before queueing) and
``geometry`` (what the NoR term's pull depends on: the planner's lambda rescaling and its measurement
key on it).

No torch import: login-node processes (planning, launching) read specs too. Of normae it may import
only what ``MAY_IMPORT`` names (``data.registry``: the data sets' names and defaults).

Of normae it may import exactly ``data.registry``, ``paths``, ``errors`` (its ``MAY_IMPORT``, held by
tests/test_layout.py).
"""

from __future__ import annotations

from normae.spec.base import (
    ACCUM_HELP,
    BATCH_SIZE_HELP,
    GLOBAL_BATCH_HELP,
    SPEC_CLASSES,
    SpecBase,
    batch_part,
    batch_problems,
    load_spec,
    option,
    spec_from_dict,
)
from normae.spec.bench import BenchSpec
from normae.spec.evaluation import DownstreamSpec, FinetuneSpec, InitSource, KnnSpec, LinprobeSpec, SegmentSpec
from normae.spec.pretrain import PAPER_LAMBDA, PretrainSpec
from normae.spec.vocabulary import (
    AMP_MODES,
    BASE_OF_NOR,
    CNP_MODES,
    DISTILLED_METHODS,
    LOADERS,
    METHODS,
    NOR_METHODS,
    NOR_VARIANTS,
    STAGES,
    SUPERVISED_METHODS,
    Amp,
    CnpMode,
    Loader,
    Method,
    NorVariant,
    Stage,
)

# Checked by tests/test_layout.py: the normae modules and sub-packages this one may import.
MAY_IMPORT = ("data.registry", "paths", "errors")

__all__ = [
    "ACCUM_HELP",
    "AMP_MODES",
    "BASE_OF_NOR",
    "BATCH_SIZE_HELP",
    "CNP_MODES",
    "DISTILLED_METHODS",
    "GLOBAL_BATCH_HELP",
    "LOADERS",
    "METHODS",
    "NOR_METHODS",
    "NOR_VARIANTS",
    "PAPER_LAMBDA",
    "SPEC_CLASSES",
    "STAGES",
    "SUPERVISED_METHODS",
    "Amp",
    "BenchSpec",
    "CnpMode",
    "DownstreamSpec",
    "FinetuneSpec",
    "InitSource",
    "KnnSpec",
    "LinprobeSpec",
    "Loader",
    "Method",
    "NorVariant",
    "PretrainSpec",
    "SegmentSpec",
    "SpecBase",
    "Stage",
    "batch_part",
    "batch_problems",
    "load_spec",
    "option",
    "spec_from_dict",
]

assert set(SPEC_CLASSES) == set(STAGES), "every stage of normae.spec.vocabulary has a spec class"
