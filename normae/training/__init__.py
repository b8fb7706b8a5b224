"""Training: the one loop every stage runs on. The loop (schedule, AMP, accumulation, DDP,
checkpoints), its state (one dataclass saved and restored as one object), per-sample seeding for
exact resume, stop signals (checkpoint, then stop or go on), and the runtime (process group, AMP
precision, torch threads, the allocator tweak), and ``dali_batches`` (the loop fed by DALI).

May import torch, numpy and, of normae, only what ``MAY_IMPORT`` names (``data``: the epoch's sample
order, DALI's pipeline; ``atomic``: checkpoints written whole); never ``core`` or anything above it:
the loop knows nothing of MAE.

Of normae it may import exactly ``data``, ``paths``, ``atomic``, ``errors`` (its ``MAY_IMPORT``, held by
tests/test_layout.py).
"""

# Checked by tests/test_layout.py: the normae modules and sub-packages this one may import.
MAY_IMPORT = ("data", "paths", "atomic", "errors")
