# Pre-training and evaluation runs: one job per planned run. `normae spec` writes the run's spec
# into its folder and `normae launch` runs it there (the spec says which stage). The job's output
# is the run's summary.json, which the stage writes last, so a killed or failed run is never taken
# as finished; checkpoint.pt stays in the run folder and the next attempt resumes from it.


rule train_run:
    """One planned run (pre-training or evaluation): writes its spec, launches it, resumes it if killed."""
    input:
        unpack(run_inputs),
    output:
        LAYOUT.run_file("{run}", RunFolder.SUMMARY),
    log:
        LAYOUT.run_file("{run}", RunFolder.LAUNCH_LOG),
    benchmark:
        LAYOUT.run_file("{run}", RunFolder.BENCHMARK)
    conda:
        "../../environment.yml"
    threads: 1
    params:
        plan=PLAN_OPTIONS,
        spec=lambda wildcards: shlex.quote(str(LAYOUT.run(wildcards.run).spec_path)),
        out=lambda wildcards: shlex.quote(str(LAYOUT.run(wildcards.run).path)),
        launcher=launcher_options,
    shell:
        "(normae spec {wildcards.run:q} {params.plan} --out {params.spec}"
        " && normae launch --spec {params.spec} --out {params.out} {params.launcher})"
        " > {log:q} 2>&1"
