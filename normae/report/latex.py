"""LaTeX-safe text for the .tex tables: every special character of LaTeX escaped in one pass."""

from __future__ import annotations

import re

import pandas as pd

# Each special character and what stands for it; one pass, so the braces an escape adds stay as they are.
LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # Characters the tables use that pdflatex without extra packages may not know.
    "±": r"$\pm$",
    "×": r"$\times$",
    "→": r"$\rightarrow$",
}
_SPECIAL = re.compile("|".join(re.escape(c) for c in LATEX_SPECIALS))


def latex_escape(text: object) -> str:
    """``text`` (any value, as str) with LaTeX's special characters escaped."""
    return _SPECIAL.sub(lambda match: LATEX_SPECIALS[match.group(0)], str(text))


def latex_table(frame: pd.DataFrame, caption: str, label: str) -> str:
    """A ``table`` environment of ``frame`` (every cell, column name and the caption escaped; the label
    keeps only letters, digits and ``:.-``)."""
    escaped = frame.astype(object).map(latex_escape)
    escaped.columns = [latex_escape(c) for c in frame.columns]
    return escaped.to_latex(
        index=False, escape=False, caption=latex_escape(caption), label=re.sub(r"[^A-Za-z0-9:.-]", "-", label)
    )
