"""Analysis: measurements that train nothing. ``cnp_stats`` (Figure 3: how alike a patch and its
closest neighbour are), ``pca`` (Figures 7-8: visible vs closest-neighbour features of a pre-trained
encoder) and ``bench`` (MAE vs NoR-MAE step time and memory, interleaved in one process).

May import ``core``, ``data``, ``training`` (runtime pieces), ``spec``, ``paths`` and ``errors``;
never ``stages``, ``experiments``, ``report`` or ``cluster``.
"""
