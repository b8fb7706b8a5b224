# Finished runs -> the paper's tables (paper | ours | delta | gain) and one tidy all_runs.csv.

rule table:
    input:
        table_inputs,
    output:
        csv=report("results/tables/{table}.csv", category="Tables"),
        md="results/tables/{table}.md",
        tex="results/tables/{table}.tex",
    log:
        "results/logs/tables/{table}.log",
    params:
        plan=PLAN_OPTIONS,
    conda:
        "../../environment.yml"
    shell:
        "normae tables {wildcards.table} {params.plan} --out results/tables > {log} 2>&1"


rule all_runs:
    input:
        summaries([*PLAN.pretrain, *PLAN.evaluations]),
    output:
        "results/all_runs.csv",
    log:
        "results/logs/all_runs.log",
    params:
        plan=PLAN_OPTIONS,
    conda:
        "../../environment.yml"
    shell:
        "normae all-runs {params.plan} --out {output} > {log} 2>&1"
