"""The .tex tables go into a paper: every table of the plan, written from fake finished runs at three seeds
(intervals: the widest cells), is compact and compiles with pdflatex inside all.tex, none wider than the text."""

import json
import re
import subprocess
import sys

import pytest
from tex_checks import assert_compilable_tex, compile_tex

from normae.experiments import plan as normae_plan
from normae.paths import ResultsLayout
from normae.report import latex
from normae.report.latex import latex_escape
from normae.report.tables import table_frame, write_table

BENCH = {"nor_over_mae_memory": 1.08, "nor_over_mae_time": 1.02, "model": "vit_tiny", "img_size": 224}


def fake_every_result(root, plan):
    """A summary.json per planned run (top-1 and mIoU spread over seeds), each bench run's measurement,
    each PCA analysis and each CNP-similarity source: everything the plan's tables read."""
    layout = ResultsLayout(root)
    for index, (run_id, spec) in enumerate({**plan.pretrain, **plan.evaluations}.items()):
        value = 20.0 + (index * 7.3) % 9.7
        summary = {"run_id": run_id, "spec": spec.to_dict(), "top1": value, "miou": value / 2, "eval_images": 512}
        layout.run(run_id).path.mkdir(parents=True)
        layout.run(run_id).summary_path.write_text(json.dumps({**summary, "final": {"loss": 1.0}, "epochs": 1}))
    for table in plan.tables.values():
        for row in table.rows:
            for run_id in row.eval_ids if table.measure == "cost" else []:
                layout.run(run_id).path.mkdir(parents=True, exist_ok=True)
                layout.run(run_id).summary_path.write_text(json.dumps(BENCH))
            for run_id in row.pretrain_ids if row.status == "analysis" else []:
                layout.pca(run_id).parent.mkdir(parents=True, exist_ok=True)
                layout.pca(run_id).write_text(json.dumps({"mean_pairwise_cosine_cnp": 0.123456}))
    for source in plan.scale.analysis["cnp_similarity"]:
        layout.cnp_similarity(source).parent.mkdir(parents=True, exist_ok=True)
        layout.cnp_similarity(source).write_text(json.dumps({"mean": 0.81, "min": 0.07, "max": 0.999}))


def write_all(root, plan, entry_point=False):
    """Every table of ``plan`` from fake results under ``root``, and all.tex beside them, written as the
    workflow's rule writes it (``entry_point``: through ``python -m``, as the rule runs it)."""
    fake_every_result(root, plan)
    out = root / "tables"
    tex = [write_table(table_frame(table, plan, root), table, plan, out)[2] for table in plan.tables.values()]
    arguments = [*map(str, tex), "--out", str(out / "all.tex")]
    if entry_point:
        subprocess.run([sys.executable, "-m", "normae.cli", "tables-tex", *arguments], check=True)
    else:
        latex.main(arguments)
    return out, tex


def assert_compact(path):
    """A table a paper takes: booktabs said on its first line, plain-font text, at most 8 columns, a short
    caption that leaves "Table N" to LaTeX."""
    tex = path.read_text()
    assert tex.startswith("% tab:") and r"\usepackage{booktabs}" in tex.splitlines()[0]
    assert_compilable_tex(tex)
    columns = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    assert len(columns) <= 8, f"{path.name}: {len(columns)} columns"
    caption = re.search(r"\\caption\{(.*)\}", tex).group(1)
    assert not caption.startswith(("Table", "Figure")) and len(caption) < 200, caption
    assert "->" not in tex and "||" not in tex and "_" not in tex.replace(r"\_", "")


def test_a_table_in_the_papers_layout(tmp_path, tiny_plan):
    fake_every_result(tmp_path, tiny_plan)
    table = tiny_plan.tables["T1"]
    path = write_table(table_frame(table, tiny_plan, tmp_path), table, tiny_plan, tmp_path / "tables")[2]
    assert_compact(path)
    tex = path.read_text()
    assert r"\caption{patch size, ViT-Tiny, ImageNet-100 (the paper's Table 1); ours at the tiny scale.}" in tex
    assert "Patch size & Method & CNP & Paper & Ours & Ours$-$paper & Gain (ours)" in tex
    assert "\n$2^2$ & MAE &  & 71.08 & not run &  &  \\\\\n" in tex, "the first label once per group"
    assert "\n & NoR-MAE & paper & 83.56 (+12.48) & not run &  &  \\\\\n" in tex, "the paper's gain beside it"
    assert r"patch sizes 32 $\to$ 7" in tex and r"Masking ratio: 75\%" in tex, (
        "the mapping and shared terms in the notes"
    )


def test_the_old_font_traps_are_escaped():
    assert (
        latex_escape("16 -> 4, ||grad|| <1>")
        == r"16 $\to$ 4, \textbar{}\textbar{}grad\textbar{}\textbar{} \textless{}1\textgreater{}"
    )


@pytest.mark.slow
def test_all_tex_compiles_and_no_table_is_wider_than_the_text(tmp_path):
    """At three seeds (every cell an interval, the widest the tables get)."""
    plan = normae_plan.expand(normae_plan.load_experiments(), normae_plan.load_scale("tiny"), seeds=[0, 1, 2])
    out, tex_files = write_all(tmp_path, plan, entry_point=True)
    for path in tex_files:
        assert_compact(path)
    document = (out / "all.tex").read_text()
    assert all(f"\\input{{{path.stem}}}" in document for path in tex_files)
    log = compile_tex(out)
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*\n.*\n", log)
    assert "Float too large" not in log
    assert f"all.pdf ({len(tex_files)} pages" in log, "one page per table"
