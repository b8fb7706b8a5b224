# Finished runs -> the paper's tables (paper | ours | delta | gain) and one tidy all_runs.csv.


rule table:
    """One table: the paper's value beside ours per row, paired NoR-MAE minus MAE and verdicts (csv, md, tex, html;
    csv.html: every column as a page)."""
    input:
        table_inputs,
    output:
        csv=LAYOUT.table("{table}", "csv"),
        md=LAYOUT.table("{table}", "md"),
        tex=LAYOUT.table("{table}", "tex"),
        html=report(
            LAYOUT.table("{table}", "html"),
            category="Tables",
            caption="../report/table.rst",
            labels=lambda wildcards: paper_order(wildcards.table, "table"),
        ),
        # Every column of the .csv as a page: the report shows HTML, where a .csv would download.
        csv_page=report(
            LAYOUT.table("{table}", "csv.html"),
            category="Table data (CSV)",
            caption="../report/table_csv.rst",
            labels=lambda wildcards: paper_order(wildcards.table, "table"),
        ),
    log:
        LAYOUT.log("tables/{table}"),
    conda:
        "../../environment.yml"
    params:
        plan=PLAN_OPTIONS,
        out=lambda wildcards, output: shlex.quote(str(Path(output.csv).parent)),
    shell:
        "normae tables {wildcards.table:q} {params.plan} --out {params.out} > {log:q} 2>&1"


rule tables_tex:
    """One LaTeX document that inputs every table's .tex (compile it in its folder: pdflatex all.tex)."""
    input:
        [LAYOUT.table(table, "tex") for table in TABLES],
    output:
        LAYOUT.table("all", "tex"),
    log:
        LAYOUT.log("tables/all_tex"),
    conda:
        "../../environment.yml"
    shell:
        "normae tables-tex {input:q} --out {output:q} > {log:q} 2>&1"


rule verdicts:
    """The report's Summary: how many run pairs of each table earned each verdict."""
    input:
        [LAYOUT.table(table, "csv") for table in TABLES],
    output:
        report(LAYOUT.verdicts(), category="Summary", caption="../report/verdicts.rst"),
    log:
        LAYOUT.log("tables/verdicts"),
    conda:
        "../../environment.yml"
    shell:
        "normae verdicts {input:q} --out {output:q} > {log:q} 2>&1"


rule all_runs:
    """One tidy CSV: a row per planned run with its spec, final metrics and diagnostics."""
    input:
        summaries([*PLAN.pretrain, *PLAN.evaluations]),
    output:
        LAYOUT.all_runs(),
    log:
        LAYOUT.log("all_runs"),
    conda:
        "../../environment.yml"
    params:
        plan=PLAN_OPTIONS,
    shell:
        "normae all-runs {params.plan} --out {output:q} > {log:q} 2>&1"
