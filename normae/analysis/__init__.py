"""Analysis: measurements that train nothing. ``cnp_stats`` (Figure 3: how alike a patch and its
closest neighbour are), ``pca`` (Figures 7-8: visible vs closest-neighbour features of a pre-trained
encoder), ``bench`` (MAE vs NoR-MAE step time and memory, interleaved in one process), ``flops``
(FLOPs of a training step counted by torch, and the MFU they give on a known GPU), ``loader_throughput``
(a data loader's images/s alone: torchvision or DALI) and ``nor_share`` (the NoR term's pull at init).

Of normae it may import only what ``MAY_IMPORT`` names (``training`` for its runtime pieces); never
``stages``, ``experiments``, ``report`` or ``cluster``: the stages and the command line run these.

Of normae it may import exactly ``core``, ``data``, ``training``, ``spec``, ``paths``, ``errors`` (its
``MAY_IMPORT``, held by tests/test_layout.py).
"""

# Checked by tests/test_layout.py: the normae modules and sub-packages this one may import.
MAY_IMPORT = ("core", "data", "training", "spec", "paths", "errors")
