# Measurements that train nothing (Figure 3, cost) and the PCA of a pre-trained encoder (Figures 7-8).


rule cost:
    output:
        f"{ANALYSIS_DIR}/cost.json",
    log:
        "results/logs/analysis/cost.log",
    params:
        bench=" ".join(f"--{key.replace('_', '-')} {value}" for key, value in ANALYSIS["cost"].items()),
    threads: 1
    conda:
        "../../environment.yml"
    shell:
        "normae bench {params.bench} --out {output} > {log} 2>&1"


rule cnp_similarity:
    output:
        f"{ANALYSIS_DIR}/cnp_similarity/{{source}}.json",
    log:
        "results/logs/analysis/cnp_similarity_{source}.log",
    params:
        options=lambda wildcards: " ".join(
            f"--{key.replace('_', '-')} {value}"
            for key, value in ANALYSIS["cnp_similarity"][wildcards.source].items()
        ),
    threads: 1
    conda:
        "../../environment.yml"
    shell:
        "normae cnp-stats --source {wildcards.source} {params.options} --out {output} > {log} 2>&1"


rule pca:
    input:
        f"{RUNS}/{{run}}/summary.json",
    output:
        npz=f"{ANALYSIS_DIR}/pca/{{run}}.npz",
        json=f"{ANALYSIS_DIR}/pca/{{run}}.json",
    log:
        "results/logs/analysis/pca_{run}.log",
    params:
        images=ANALYSIS["pca"]["images"],
        run=lambda wildcards: f"{RUNS}/{wildcards.run}",
    threads: 1
    conda:
        "../../environment.yml"
    shell:
        "normae pca --run {params.run} --images {params.images} --out {output.npz} > {log} 2>&1"
