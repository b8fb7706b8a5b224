# Pre-training and evaluation runs: one job per planned run. `normae spec` writes the run's spec
# into its folder and `normae launch` runs it there. The job's output is the run's summary.json,
# which the stage writes last, so a killed or failed run is never taken as finished;
# checkpoint.pt stays in the run folder and the next attempt resumes from it.


rule train_run:
    input:
        unpack(run_inputs),
    output:
        f"{RUNS}/{{run}}/summary.json",
    log:
        f"{RUNS}/{{run}}/launch.log",
    params:
        plan=PLAN_OPTIONS,
        stage=lambda wildcards: PLAN.spec(wildcards.run).stage,
        out=lambda wildcards: f"{RUNS}/{wildcards.run}",
        launcher=launcher_options,
    threads: 1
    conda:
        "../../environment.yml"
    shell:
        "(normae spec {wildcards.run} {params.plan} --out {params.out}/spec.json"
        " && normae launch {params.stage} --spec {params.out}/spec.json --out {params.out} {params.launcher})"
        " > {log} 2>&1"
