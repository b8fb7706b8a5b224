# Measurements that train nothing (Figure 3, cost) and the PCA of a pre-trained encoder (Figures 7-8).


rule cost_benchmark:
    """The cost claim: NoR-MAE vs MAE step time and memory (normae bench)."""
    output:
        LAYOUT.cost(),
    log:
        LAYOUT.log("analysis/cost"),
    conda:
        "../../environment.yml"
    threads: 1
    params:
        bench=cli_options(ANALYSIS["cost"]),
    shell:
        "normae bench {params.bench} --threads {threads} --out {output:q} > {log:q} 2>&1"


rule cnp_similarity:
    """Figure 3's numbers: cosine of each patch with its closest neighbour, per image source."""
    output:
        LAYOUT.cnp_similarity("{source}"),
    log:
        LAYOUT.log("analysis/cnp_similarity_{source}"),
    conda:
        "../../environment.yml"
    threads: 1
    params:
        options=lambda wildcards: cli_options(ANALYSIS["cnp_similarity"][wildcards.source]),
    shell:
        "normae cnp-stats --source {wildcards.source:q} {params.options} --out {output:q} > {log:q} 2>&1"


rule pca:
    """Figures 7-8: PCA of visible vs closest-neighbour features of one pre-trained encoder."""
    input:
        summary_file("{run}"),
    output:
        npz=LAYOUT.pca("{run}", "npz"),
        json=LAYOUT.pca("{run}", "json"),
    log:
        LAYOUT.log("analysis/pca_{run}"),
    conda:
        "../../environment.yml"
    threads: 1
    params:
        images=ANALYSIS["pca"]["images"],
        run=lambda wildcards: shlex.quote(str(LAYOUT.run(wildcards.run).path)),
    shell:
        "normae pca --run {params.run} --images {params.images} --out {output.npz:q} > {log:q} 2>&1"
