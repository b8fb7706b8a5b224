# Pre-training and evaluation runs: one job per planned run, output its summary.json, which the
# stage writes last, so a killed or failed run is never taken as finished; checkpoint.pt stays
# in the run folder and the next attempt resumes from it.


rule run_spec:
    output:
        "results/specs/{run}.json",
    params:
        spec=lambda wildcards: planned_spec(wildcards.run).to_json(),
    log:
        "results/logs/specs/{run}.log",
    localrule: True
    run:
        Path(output[0]).write_text(params.spec)


rule train_run:
    input:
        unpack(run_inputs),
    output:
        f"{RUNS}/{{run}}/summary.json",
    log:
        f"{RUNS}/{{run}}/launch.log",
    params:
        stage=lambda wildcards: planned_spec(wildcards.run).stage,
        out=lambda wildcards: f"{RUNS}/{wildcards.run}",
        launcher=launcher_options,
    threads: 1
    conda:
        "../../environment.yml"
    shell:
        "normae launch {params.stage} --spec {input.spec} --out {params.out} {params.launcher} > {log} 2>&1"
