"""The report's readable pages: each table as HTML with its header lines as captions, and the first page's
verdicts per table written by `normae verdicts`."""

import html
import re
import subprocess

import pandas as pd
from test_tables import fake_runs

from normae.experiments import plan
from normae.report.html import NO_VERDICTS, csv_page
from normae.report.table_text import display_frame, number_text
from normae.report.tables import header_lines, table_frame, write_table

from helpers import NORMAE


def test_written_html_holds_the_header_lines_and_every_shown_row(tmp_path, tiny_plan):
    table = tiny_plan.tables["T3"]
    fake_runs(tmp_path, tiny_plan, table.eval_ids(), lambda run_id: 12.5, eval_images=300)
    frame = table_frame(table, tiny_plan, tmp_path)
    paths = write_table(frame, table, tiny_plan, tmp_path / "tables")
    page = paths[-1].read_text()
    assert paths[-1].name == "table3.html" and page.startswith("<!DOCTYPE html>")
    for line in header_lines(table, tiny_plan):
        assert html.escape(line) in page, line
    assert html.escape("vit_base (ran vit_mini)") in page and "&plusmn;" not in page
    shown, _ = display_frame(frame)
    rows = page.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == len(shown) == len(frame)
    for row, cells in zip(rows, shown.astype(str).itertuples(index=False)):
        assert [f"<td>{html.escape(cell, quote=False)}</td>" in row for cell in cells] == [True] * len(cells), row


def write_csv(path, rows):
    pd.DataFrame(rows, columns=["verdict", "pair", "gain_ours", "gain_paper"]).to_csv(path, index=False)
    return str(path)


def verdicts(tmp_path, *csvs):
    out = tmp_path / "verdicts.html"
    result = subprocess.run(NORMAE + ["verdicts", *csvs, "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out.read_text()


def test_verdicts_page_counts_each_tables_run_pairs(tmp_path):
    first = write_csv(
        tmp_path / "table5.csv",
        [
            ("reproduced", "a vs b", 1.0, 0.5),
            ("reproduced", "a vs b", 1.0, 0.7),  # the same runs again: counts once
            ("within noise", "c vs d", 0.0, 0.4),
            (None, None, None, None),  # an MAE row
        ],
    )
    second = write_csv(tmp_path / "table6.csv", [("reversed", "e vs f", -2.0, 1.0)])
    page = verdicts(tmp_path, first, second)
    rows = page.split("<tbody>")[1]
    assert rows.count("<tr>") == 2
    assert "<td>table5</td>" in rows and "<td>2</td>" in rows and "<td>1 reproduced, 1 within noise</td>" in rows
    assert "<td>+0.50</td>" in rows and "<td>+0.53</td>" in rows
    assert "<td>table6</td>" in rows and "<td>1 reversed</td>" in rows and "<td>-2.00</td>" in rows


def test_verdicts_page_skips_a_table_without_verdicts_and_says_when_none_has_one(tmp_path):
    empty = write_csv(tmp_path / "figure3.csv", [(None, None, None, 0.83)])
    with_verdicts = write_csv(tmp_path / "table6.csv", [("one seed", "e vs f", 0.1, 1.0)])
    page = verdicts(tmp_path, empty, with_verdicts)
    assert "figure3" not in page and "<td>1 one seed</td>" in page
    page = verdicts(tmp_path, empty)
    assert html.escape(NO_VERDICTS) in page and "<table" not in page


def test_verdicts_names_a_missing_table(tmp_path):
    result = subprocess.run(
        NORMAE + ["verdicts", str(tmp_path / "table9.csv"), "--out", str(tmp_path / "v.html")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "table9.csv" in result.stderr and "normae tables" in result.stderr


def test_a_wide_table_scrolls_inside_its_frame_and_every_csv_column_has_a_page(tmp_path, tiny_plan):
    table = tiny_plan.tables["T3"]
    fake_runs(tmp_path, tiny_plan, table.eval_ids(), lambda run_id: 12.5, eval_images=300)
    paths = write_table(table_frame(table, tiny_plan, tmp_path), table, tiny_plan, tmp_path / "tables")
    page = paths[-1].read_text()
    assert "div.table{overflow-x:auto" in page
    assert page.count('<div class="table">') == 1 and page.split('<div class="table">')[1].lstrip().startswith("<table")
    frame = pd.read_csv(paths[0], keep_default_na=False, dtype=str)
    data = csv_page(paths[0])
    assert '<div class="table">' in data and html.escape("results/tables/table3.csv") in data
    head = data.split("<thead>")[1].split("</thead>")[0]
    assert [f"<th>{html.escape(column)}</th>" in head for column in frame.columns] == [True] * len(frame.columns)
    rows = data.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == len(frame)
    for row, cells in zip(rows, frame.itertuples(index=False)):
        assert [f"<td>{html.escape(cell, quote=False)}</td>" in row for cell in cells] == [True] * len(cells)


def test_numbers_have_one_format_and_a_zero_difference_no_sign(tmp_path, tiny_plan):
    table = tiny_plan.tables["T6"]
    fake_runs(tmp_path, tiny_plan, table.eval_ids(), lambda run_id: 20.0, eval_images=400)
    shown, _ = display_frame(table_frame(table, tiny_plan, tmp_path))
    assert set(shown["ours"]) == {"20.00 ± 2.00"}  # top-1 with 2 decimals, no sign: not a difference
    assert set(shown["gain_ours"]) - {""} == {"0.00 ± 2.83"}  # NoR-MAE minus MAE: 0, not +0 or -0.00
    assert all(text.startswith(("+", "-")) for text in shown["delta"])  # ours minus the paper's: signed
    assert all(re.fullmatch(r"\d+\.\d\d", text) for text in shown["paper"])
    assert number_text(-0.004, signed=True) == "0.00" and number_text(0.5, signed=True) == "+0.50"
    assert number_text(-1.234, 3, signed=True) == "-1.234" and number_text(0.999, 3) == "0.999"


def test_the_random_init_row_says_which_encoder_ran(tmp_path):
    cpu = plan.expand(plan.load_experiments(), plan.load_scale("cpu"))
    table = cpu.tables["evidence"]
    fake_runs(tmp_path, cpu, table.eval_ids(), lambda run_id: 60.0, eval_images=10000)
    frame = table_frame(table, cpu, tmp_path)
    assert set(frame["model_ran"]) == {"vit_micro"} and set(frame["patch_size_ran"]) == {4}
    shown, common = display_frame(frame)
    assert "model vit_tiny (ran vit_micro)" in common and "patch_size 16 (ran 4)" in common


def test_normae_tables_writes_the_csv_page_the_report_shows(tmp_path, tiny_plan):
    table = tiny_plan.tables["T6"]
    fake_runs(tmp_path, tiny_plan, table.eval_ids(), lambda run_id: 20.0, eval_images=400)
    command = NORMAE + ["tables", "table6", "--scale", "tiny", "--root", str(tmp_path), "--out", str(tmp_path / "t")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "t" / "table6.csv.html").read_text()
    assert (
        page == csv_page(tmp_path / "t" / "table6.csv")
        and f"wrote {tmp_path / 't' / 'table6.csv.html'}" in result.stderr
    )
