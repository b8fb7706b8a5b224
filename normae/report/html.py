"""Readable HTML pages for the workflow's report (``snakemake --report``): one page per table, its header
lines (scale, mapping, how to read it) as caption paragraphs above the shown columns, and the first
page's verdicts per table. Every text is escaped with ``html.escape``, every frame by pandas.

Torch-free; pandas only.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from normae.report.table_text import verdicts_markdown

STYLE = (
    "body{font-family:sans-serif;margin:1em;color:#222}"
    "p.caption{max-width:60em;margin:.3em 0;color:#444}"
    "table{border-collapse:collapse;margin-top:1em;font-size:.9em}"
    "th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}"
    "th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}"
    # A table wider than the report's frame scrolls inside its own box; the captions stay in view.
    "div.table{overflow-x:auto;max-width:100%}"
)
NO_VERDICTS = "No table has a NoR-MAE row with its own MAE row measured yet, so there is no verdict to summarise."


def html_page(title: str, captions: list[str], body: str = "") -> str:
    """A self-contained page: ``title`` as <h2>, each caption as a paragraph (both escaped), then ``body``
    (HTML, as it is)."""
    paragraphs = "".join(f'<p class="caption">{html.escape(line)}</p>\n' for line in captions)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n<h2>{html.escape(title)}</h2>\n{paragraphs}{body}\n</body></html>\n"
    )


def frame_html(frame: pd.DataFrame) -> str:
    """``frame`` as an HTML table in a box that scrolls where the table is wider than the page, every cell and
    column name escaped; numbers as the .md writes them (``5e-05``, not pandas' ``0.00005``)."""
    cells = frame.astype(object).map(_cell_text)
    return f'<div class="table">\n{cells.to_html(index=False, escape=True, border=0)}\n</div>'


def _cell_text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def table_page(title: str, captions: list[str], shown: pd.DataFrame) -> str:
    """A table's readable page: its title, its header lines as captions and its shown columns."""
    return html_page(title, captions, frame_html(shown))


def csv_page(table_csv: str | Path) -> str:
    """Every column of a table's .csv as a page: the report shows HTML, where it offers a .csv for download."""
    path = Path(table_csv)
    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    captions = [
        f"Every column of {path.name} ({len(frame)} rows): run ids, per-seed values, intervals and standard "
        f"errors. The file itself is results/tables/{path.name}; the readable table is under Tables."
    ]
    return html_page(f"{path.stem}: every column", captions, frame_html(frame))


def markdown_rows(markdown: str) -> pd.DataFrame:
    """A pipe table (header, rule line, rows; no ``|`` inside cells) as a frame of strings."""
    lines = [line.strip() for line in markdown.splitlines() if line.strip()]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return pd.DataFrame(cells[2:], columns=cells[0]) if cells else pd.DataFrame()


def verdicts_page(table_csvs: list[str] | list[Path]) -> str:
    """The report's first page: per table (its .csv) the verdicts of its NoR-MAE vs MAE run pairs; a table
    without verdicts is left out, and a page where no table has one says so in one sentence."""
    rows = markdown_rows(verdicts_markdown(table_csvs))
    title = "Verdicts per table: NoR-MAE minus MAE"
    if rows.empty:
        return html_page(title, [NO_VERDICTS])
    captions = [
        "Per table, the distinct NoR-MAE vs MAE run pairs (rows that ran the same runs count once), how many "
        "earned each verdict, and the mean paired gain (NoR-MAE minus MAE) beside the paper's."
    ]
    return html_page(title, captions, frame_html(rows))
