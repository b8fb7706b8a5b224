"""The report's start page (workflow/report/workflow.rst), rendered as Snakemake renders it (Jinja with the
workflow's config and the report's files, then docutils): the answer first at each scale."""

from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
from docutils.core import publish_parts

PAGE = Path(__file__).resolve().parents[1] / "workflow" / "report" / "workflow.rst"


def start_page(scale, targets):
    """The page's HTML body at ``scale`` with the report holding ``targets`` (file names), each linked as
    Snakemake links them (an rst target per file)."""
    files = [SimpleNamespace(target=name, path=f"results/{name}") for name in targets]
    config = {"scale": scale, "report_page": {"seeds": "0, 1, 2, 3, 4", "description": f"{scale} description"}}
    links = "".join(f"\n.. _{name}: javascript:app.showResultInfo('{name}')\n" for name in targets)
    text = (
        jinja2.Environment()
        .from_string(PAGE.read_text() + links)
        .render(snakemake=SimpleNamespace(config=config), categories={}, files=files)
    )
    return publish_parts(text, writer="html", settings_overrides={"halt_level": 2})["html_body"]


def test_the_cpu_page_leads_with_the_evidence_table_and_figure():
    shown = ["evidence.html", "evidence.csv.html", "evidence_lambda.png"]
    shown += ["evidence_long.html", "evidence_long_pull.png"]
    page = start_page("cpu", shown)
    first = page.split("</p>")[1]  # the paragraph after the one naming the scale and seeds
    assert "The answer so far: the evidence." in first
    assert "showResultInfo('evidence.html')" in first and "showResultInfo('evidence_lambda.png')" in first
    assert "showResultInfo('evidence_long.html')" in first and "showResultInfo('evidence_long_pull.png')" in first
    assert "with seeds 0, 1, 2, 3, 4" in " ".join(page.split())
    assert "pipeline check" not in page


def test_the_cpu_page_before_the_evidence_ran_says_so():
    page = start_page("cpu", [])
    assert page.count("not run yet") == 4 and "showResultInfo" not in page


@pytest.mark.parametrize("scale", ["tiny", "micro"])
def test_a_small_scale_page_says_it_is_a_pipeline_check_and_where_the_answer_is(scale):
    page = start_page(scale, ["table6.html"])
    first = page.split("</p>")[1]
    assert "This report is a pipeline check, not evidence." in first and "say nothing about the paper" in first
    answer = page.split("</p>")[2]
    assert "make evidence" in answer and "docs/measurements.md" in answer and "report-evidence.html" in answer
