# The paper's figures from finished runs and analyses, and one plot per sweep table.
from normae.report.figures import pca_titles


rule figure_cnp_similarity:
    """Figure 3 as a histogram per image source."""
    input:
        [LAYOUT.cnp_similarity(source) for source in ANALYSIS["cnp_similarity"]],
    output:
        report(
            LAYOUT.figure("figure3_cnp_similarity"),
            category="Figures",
            caption="../report/figure_cnp_similarity.rst",
            labels=lambda wildcards: paper_order("figure3", "figure", "cnp_similarity"),
        ),
    log:
        LAYOUT.log("figures/figure3"),
    conda:
        "../../environment.yml"
    shell:
        "normae figure cnp-similarity {input:q} --out {output:q} > {log:q} 2>&1"


rule figure_pca:
    """Figures 7-8: the PCA scatter of a table's runs, MAE beside NoR-MAE, each panel titled by the paper's
    model(s) it stands in for and what ran."""
    input:
        pca_inputs,
    output:
        report(
            LAYOUT.figure("{figure}_pca"),
            category="Figures",
            caption="../report/figure_pca.rst",
            labels=lambda wildcards: paper_order(wildcards.figure, "figure", "pca"),
        ),
    log:
        LAYOUT.log("figures/{figure}_pca"),
    conda:
        "../../environment.yml"
    params:
        labels=lambda wildcards: shlex.join(
            pca_titles(TABLES[wildcards.figure], PLAN)[run_id] for run_id in pca_runs(TABLES[wildcards.figure])
        ),
    shell:
        "normae figure pca {input:q} --labels {params.labels} --out {output:q} > {log:q} 2>&1"


rule figure_variants:
    """Figure 6: NoR loss variants, their losses and top-1."""
    input:
        pretrain=lambda wildcards: summaries(TABLES[wildcards.figure].pretrain_ids()),
        finetune=lambda wildcards: summaries(TABLES[wildcards.figure].eval_ids()),
    output:
        report(
            LAYOUT.figure("{figure}_variants"),
            category="Figures",
            caption="../report/figure_variants.rst",
            labels=lambda wildcards: paper_order(wildcards.figure, "figure", "variants"),
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
    """A sweep table's plot: the paper's values and ours in two panels against the swept setting."""
    input:
        LAYOUT.table("{table}", "csv"),
    output:
        report(
            LAYOUT.figure("{table}_{sweep}"),
            category="Figures",
            caption="../report/figure_sweep.rst",
            labels=lambda wildcards: paper_order(wildcards.table, "figure", wildcards.sweep),
        ),
    log:
        LAYOUT.log("figures/{table}_{sweep}"),
    conda:
        "../../environment.yml"
    shell:
        "normae figure sweep {input:q} --x {wildcards.sweep:q} --out {output:q} > {log:q} 2>&1"


rule figure_evidence:
    """The evidence figure: NoR-MAE minus MAE against lambda, with the NoR gradient share."""
    input:
        LAYOUT.table("evidence", "csv"),
    output:
        report(
            LAYOUT.figure("evidence_lambda"),
            category="Figures",
            caption="../report/figure_evidence.rst",
            labels=lambda wildcards: paper_order("evidence", "figure", "lambda"),
        ),
    log:
        LAYOUT.log("figures/evidence_lambda"),
    conda:
        "../../environment.yml"
    shell:
        "normae figure evidence {input:q} --out {output:q} > {log:q} 2>&1"


rule figure_pull:
    """The NoR term's share of the gradient over training, for an evidence table's NoR-MAE runs."""
    input:
        runs=pull_runs,
        reference=PULL_REFERENCE,
    output:
        report(
            LAYOUT.figure("{table}_pull"),
            category="Figures",
            caption="../report/figure_pull.rst",
            labels=lambda wildcards: paper_order(wildcards.table, "figure", "pull"),
        ),
    log:
        LAYOUT.log("figures/{table}_pull"),
    wildcard_constraints:
        table="|".join(PULL_TABLES) or "no-pull-table",
    conda:
        "../../environment.yml"
    params:
        runs=lambda wildcards, input: [str(Path(summary).parent) for summary in input.runs],
    shell:
        "normae figure pull {params.runs:q} --reference {input.reference:q} --out {output:q} > {log:q} 2>&1"
