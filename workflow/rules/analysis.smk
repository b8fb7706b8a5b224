# Measurements that train nothing (Figure 3; the cost claim is a bench run, launched like any run) and the PCA of a pre-trained encoder (Figures 7-8).


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
        options=lambda wildcards: cli_options(
            {**ANALYSIS["cnp_similarity"][wildcards.source], **data_root_of(wildcards.source)}
        ),
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
