"""Experiments: what to run. ``config`` reads config/experiments.yaml (the paper's tables as grids),
a scale (config/scales/<name>.yaml, how the paper's settings map to what runs) and reported.csv
(the paper's numbers), each checked against its JSON schema; ``plan`` expands them into unique run
specs, the rows of every table and a device-hour estimate.

Torch-free (login nodes plan): may import yaml, jsonschema and, of normae, only what ``MAY_IMPORT``
names (``model_sizes``: the model shapes the device-hour estimate counts FLOPs with); never torch,
numpy or the training code.

Of normae it may import exactly ``spec``, ``paths``, ``errors``, ``data.registry``, ``model_sizes`` (its
``MAY_IMPORT``, held by tests/test_layout.py).
"""

# Checked by tests/test_layout.py: the normae modules and sub-packages this one may import.
MAY_IMPORT = ("spec", "paths", "errors", "data.registry", "model_sizes")
