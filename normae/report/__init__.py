"""Report: finished run folders -> what a reader sees. ``tables`` (the paper's tables with our numbers
beside the paper's, and all_runs.csv), ``figures`` (the paper's figures), ``sweep_figures`` (the sweep
and evidence plots of a table's CSV), ``pull_figure`` (the NoR pull over training), ``compare`` (two
runs side by side), ``final_metrics`` (the final metrics of finished runs as text, ``normae summarize``)
and ``run_folder`` (metrics as data frames, run labels).

May import pandas, matplotlib and, of normae, only what ``MAY_IMPORT`` names (``atomic``: tables
are written whole or not at all); never torch: tables are written on login nodes. ``tables`` and
``final_metrics`` stay free of matplotlib too.

Of normae it may import exactly ``experiments``, ``spec``, ``paths``, ``atomic``, ``errors`` (its
``MAY_IMPORT``, held by tests/test_layout.py).
"""

# Checked by tests/test_layout.py: the normae modules and sub-packages this one may import.
MAY_IMPORT = ("experiments", "spec", "paths", "atomic", "errors")
