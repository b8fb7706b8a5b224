# The paper's figures from finished runs and analyses, and one plot per sweep table.


rule figure_cnp_similarity:
    input:
        [LAYOUT.cnp_similarity(source) for source in ANALYSIS["cnp_similarity"]],
    output:
        report(
            LAYOUT.figure("figure3_cnp_similarity"),
            category="Figures",
            caption="../report/figure_cnp_similarity.rst",
        ),
    log:
        LAYOUT.log("figures/figure3"),
    conda:
        "../../environment.yml"
    shell:
        "normae figure cnp-similarity {input:q} --out {output:q} > {log:q} 2>&1"


rule figure_pca:
    input:
        pca_inputs,
    output:
        report(LAYOUT.figure("{figure}_pca"), category="Figures", caption="../report/figure_pca.rst"),
    log:
        LAYOUT.log("figures/{figure}_pca"),
    conda:
        "../../environment.yml"
    params:
        labels=lambda wildcards: shlex.join(pca_labels(TABLES[wildcards.figure])),
    shell:
        "normae figure pca {input:q} --labels {params.labels} --out {output:q} > {log:q} 2>&1"


rule figure_variants:
    input:
        pretrain=lambda wildcards: summaries(TABLES[wildcards.figure].pretrain_ids()),
        finetune=lambda wildcards: summaries(TABLES[wildcards.figure].eval_ids()),
    output:
        report(
            LAYOUT.figure("{figure}_variants"),
            category="Figures",
            caption="../report/figure_variants.rst",
        ),
    log:
        LAYOUT.log("figures/{figure}_variants"),
    conda:
        "../../environment.yml"
    params:
        pretrain=lambda wildcards, input: shlex.join(str(Path(path).parent) for path in input.pretrain),
        finetune=lambda wildcards, input: shlex.join(str(Path(path).parent) for path in input.finetune),
    shell:
        "normae figure variants {params.pretrain} --finetune {params.finetune} --out {output:q} > {log:q} 2>&1"


rule figure_sweep:
    input:
        LAYOUT.table("{table}", "csv"),
    output:
        report(LAYOUT.figure("{table}_{sweep}"), category="Figures", caption="../report/figure_sweep.rst"),
    log:
        LAYOUT.log("figures/{table}_{sweep}"),
    conda:
        "../../environment.yml"
    shell:
        "normae figure sweep {input:q} --x {wildcards.sweep:q} --out {output:q} > {log:q} 2>&1"


rule figure_evidence:
    input:
        LAYOUT.table("evidence", "csv"),
    output:
        report(LAYOUT.figure("evidence_lambda"), category="Figures"),
    log:
        LAYOUT.log("figures/evidence_lambda"),
    conda:
        "../../environment.yml"
    shell:
        "normae figure evidence {input:q} --out {output:q} > {log:q} 2>&1"
