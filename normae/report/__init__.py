"""Report: finished run folders -> what a reader sees. ``tables`` (the paper's tables with our numbers
beside the paper's, and all_runs.csv), ``figures`` (the paper's figures), ``sweep_figures`` (the sweep
and evidence plots of a table's CSV), ``compare`` (two runs side by side), ``summarize`` (final metrics
as text) and ``run_folder`` (metrics as data frames, run labels).

May import ``experiments``, ``paths``, ``spec``, ``errors``, pandas and matplotlib; never torch:
tables are written on login nodes. ``tables`` and ``summarize`` stay free of matplotlib too.
"""
