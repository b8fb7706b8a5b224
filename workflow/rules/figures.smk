# The paper's figures from finished runs and analyses, and one plot per sweep table.


rule figure_cnp_similarity:
    input:
        [f"{ANALYSIS_DIR}/cnp_similarity/{source}.json" for source in ANALYSIS["cnp_similarity"]],
    output:
        report("figures/figure3_cnp_similarity.png", category="Figures"),
    log:
        "results/logs/figures/figure3.log",
    conda:
        "../../environment.yml"
    shell:
        "normae figure cnp-similarity {input} --out {output} > {log} 2>&1"


rule figure_pca:
    input:
        pca_inputs,
    output:
        report("figures/{figure}_pca.png", category="Figures"),
    log:
        "results/logs/figures/{figure}_pca.log",
    params:
        labels=lambda wildcards: " ".join(shlex.quote(label) for label in pca_labels(TABLES[wildcards.figure])),
    conda:
        "../../environment.yml"
    shell:
        "normae figure pca {input} --labels {params.labels} --out {output} > {log} 2>&1"


rule figure_variants:
    input:
        pretrain=lambda wildcards: summaries(TABLES[wildcards.figure].pretrain_ids()),
        finetune=lambda wildcards: summaries(TABLES[wildcards.figure].eval_ids()),
    output:
        report("figures/{figure}_variants.png", category="Figures"),
    log:
        "results/logs/figures/{figure}_variants.log",
    params:
        pretrain=lambda wildcards, input: " ".join(str(Path(path).parent) for path in input.pretrain),
        finetune=lambda wildcards, input: " ".join(str(Path(path).parent) for path in input.finetune),
    conda:
        "../../environment.yml"
    shell:
        "normae figure variants {params.pretrain} --finetune {params.finetune} --out {output} > {log} 2>&1"


rule figure_sweep:
    input:
        "results/tables/{table}.csv",
    output:
        report("figures/{table}_{sweep}.png", category="Figures"),
    log:
        "results/logs/figures/{table}_{sweep}.log",
    conda:
        "../../environment.yml"
    shell:
        "normae figure sweep {input} --x {wildcards.sweep} --out {output} > {log} 2>&1"
