"""Cluster: where a run executes. ``launch`` (``normae launch``: in this process, or as a submitit job
on this machine or on SLURM, waiting for it), ``resources`` (a stage's SLURM resources),
``submitit_adapter`` (submitting, re-attaching and watching jobs: the only module that touches
submitit's internals) and ``job`` (what runs inside the job: one stage, requeued on time limits).

Torch-free when loaded, so hundreds of launchers can wait on a login node: may import submitit and,
of normae, only what ``MAY_IMPORT`` names, among them the ``stages`` registry and, inside the running
job only (``job``'s deferred imports), the training runtime (threads, allocator) and the stop signals
the job turns the cluster's signals into. Torch only inside the running job.

Of normae it may import exactly ``spec``, ``paths``, ``errors``, ``stages``, ``training.runtime``,
``training.signals`` (its ``MAY_IMPORT``, held by tests/test_layout.py).
"""

# Checked by tests/test_layout.py: the normae modules and sub-packages this one may import.
MAY_IMPORT = ("spec", "paths", "errors", "stages", "training.runtime", "training.signals")
