"""The command line: the parser and the handler of every ``normae`` command, by command family.

``main`` (the entry point: the parser in command order, the one-line error of a ``NormaeError``),
``options`` (options generated from a spec's fields, shared by the families), ``training`` (pretrain,
finetune, linprobe, knn, segment), ``bench`` (bench, bench-data), ``launch``, ``plan`` (plan, spec and
the plan options every planning command takes), ``data`` (check-data, rehearsal-data, fetch-data),
``results`` (summarize, tables, verdicts, all-runs, figure, compare), ``analysis`` (cnp-stats,
nor-share, pca) and ``progress`` (how far a workflow is). The handlers are thin: the work is in the
domain packages below.

May import everything below it (``MAY_IMPORT``); torch, and every module that loads it or
the numpy stack, only lazily inside a handler, so that planning, tabulating and launching on a login node
never load torch. Nothing imports ``cli``.

Of normae it may import exactly ``spec``, ``paths``, ``errors``, ``atomic``, ``model_sizes``, ``experiments``,
``data``, ``datacheck``, ``datagen``, ``stages``, ``cluster``, ``report``, ``analysis``, ``training`` (its
``MAY_IMPORT``, held by tests/test_layout.py).
"""

from normae.cli.main import build_parser, main

# Checked by tests/test_layout.py: the normae modules and sub-packages this one may import.
MAY_IMPORT = (
    "spec",
    "paths",
    "errors",
    "atomic",
    "model_sizes",
    "experiments",
    "data",
    "datacheck",
    "datagen",
    "stages",
    "cluster",
    "report",
    "analysis",
    "training",
)

__all__ = ["build_parser", "main"]
