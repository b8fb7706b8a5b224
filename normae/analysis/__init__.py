"""Analysis: measurements that train nothing. ``cnp_stats`` (Figure 3: how alike a patch and its
closest neighbour are), ``pca`` (Figures 7-8: visible vs closest-neighbour features of a pre-trained
encoder), ``bench`` (MAE vs NoR-MAE step time and memory, interleaved in one process), ``flops``
(FLOPs of a training step counted by torch, and the MFU they give on a known GPU), ``loader_bench`` (a
data loader's images/s alone: torchvision or DALI) and ``nor_share`` (the NoR term's pull at init).

May import ``core``, ``data``, ``training`` (runtime pieces), ``spec``, ``paths`` and ``errors``;
never ``stages``, ``experiments``, ``report`` or ``cluster``.
"""
