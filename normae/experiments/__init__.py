"""Experiments: what to run. ``config`` reads config/experiments.yaml (the paper's tables as grids),
a scale (config/scales/<name>.yaml, how the paper's settings map to what runs) and reported.csv
(the paper's numbers), each checked against its JSON schema; ``plan`` expands them into unique run
specs, the rows of every table and a device-hour estimate.

Torch-free (login nodes plan): may import ``spec``, ``paths``, ``errors``, ``data.registry``, yaml
and jsonschema; never torch, numpy or the training code.
"""
