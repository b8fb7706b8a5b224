"""Cluster: where a run executes. ``launch`` (``normae launch``: in this process, or as a submitit job
on this machine or on SLURM, waiting for it), ``resources`` (a stage's SLURM resources),
``submitit_adapter`` (submitting, re-attaching and watching jobs: the only module that touches
submitit's internals) and ``job`` (what runs inside the job: one stage, requeued on time limits).

Torch-free when loaded, so hundreds of launchers can wait on a login node: may import ``spec``,
``paths``, ``errors``, the ``stages`` registry and submitit; torch only inside the running job.
"""
