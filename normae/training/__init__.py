"""Training: the one loop every stage runs on. The loop (schedule, AMP, accumulation, DDP,
checkpoints), its state (one dataclass saved and restored as one object), per-sample seeding for
exact resume, stop signals (checkpoint, then stop or go on), and the runtime (process group, AMP
precision, torch threads, the allocator tweak).

May import torch, numpy, ``paths`` and ``errors``; never ``core``, ``data`` or anything above them:
the loop knows nothing of MAE.
"""
