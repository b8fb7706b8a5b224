"""LaTeX for the tables: every special character escaped in one pass; each table in the paper's own compact
layout (row labels as the paper prints them, the paper's number, ours with its interval, the differences),
booktabs rules and plain-font text only; and ``all.tex``, one document that inputs every table.

``python -m normae.report.latex TABLE.tex ... --out all.tex`` writes the document (the workflow's rule).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from normae.report.table_text import blank, metric_digits, number_text, row_number_text

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
    # The default (OT1) fonts print these as other glyphs: "->" as "-¿", "||" as dashes.
    "->": r"$\to$",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    # Characters the tables use that pdflatex without extra packages may not know.
    "±": r"$\pm$",
    "×": r"$\times$",
    "→": r"$\to$",
}
_SPECIAL = re.compile("|".join(re.escape(c) for c in LATEX_SPECIALS))

# The paper's names for the terms of config/reported.csv (a value not named here is printed as it is).
PAPER_NAMES = {
    "model": {
        "vit_tiny": "ViT-Tiny",
        "vit_small": "ViT-Small",
        "vit_base": "ViT-Base",
        "patch_embed": "patch embedding",
    },
    "method": {
        **{"mae": "MAE", "nor_mae": "NoR-MAE", "sup_mae": "Sup MAE", "sup_nor_mae": "Sup NoR-MAE", "dmae": "DMAE"},
        **{"nor_dmae": "NoR-DMAE", "mocov3": "MoCo-V3", "dino": "DINO", "simmim": "SimMIM", "crossmae": "CrossMAE"},
        **{"umae": "U-MAE", "maskfeat_hog": "MaskFeat HOG", "peco": "PeCo", "beit": "BEiT"},
        **{"random_init": "random init", "none": "none"},
    },
    "dataset": {
        **{"imagenet1k": "ImageNet-1K", "imagenet100": "ImageNet-100", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"},
        **{"flowers102": "Flowers", "pets": "Pets", "dtd": "DTD", "food101": "Food", "caltech101": "Caltech-101"},
        **{"aircraft": "Aircraft", "ade20k": "ADE20K"},
    },
    "cnp": {"authors_code": "authors' code"},
    "eval": {"finetune": "fine-tuning", "linprobe": "linear probe", "knn": "k-NN", "segmentation": "segmentation"},
    "metric": {
        **{"top1": "top-1", "miou": "mIoU", "cnp_pairwise_cosine": "CNP pairwise cosine"},
        **{"memory_overhead_vs_mae": "memory over MAE's", "time_overhead_vs_mae": "time over MAE's"},
    },
}
# Row-label columns in the paper's order, with their headers; a column is printed only where its rows differ.
LABEL_HEADERS = {
    "model": "ViT model",
    "pretrain_dataset": "Pre-training data",
    "patch_size": "Patch size",
    "mask_ratio": "Masking ratio",
    "method": "Method",
    "cnp": "CNP",
    "nor_variant": "NoR variant",
    "pretrain_epochs": "Epochs",
    "lam": r"$\lambda$",
    "eval_dataset": "Dataset",
    "eval": "Evaluation",
    "metric": "Metric",
    "source": "Source",
}
# Number columns: header, and how a row's cell is written (each dropped where no row has one).
NUMBER_HEADERS = {
    "paper": "Paper",
    "ours": "Ours",
    "delta": r"Ours$-$paper",
    "gain_ours": r"Gain (ours)",
    "over_init": "Over init",
}
NUMBER_NOTE = (
    "Paper: the paper's number, with its NoR-MAE minus MAE gain in parentheses. Ours: the mean over seeds "
    "with its 95 % Student-t interval [low, high], or one evaluation ± its binomial standard error. "
    "Gain (ours): our NoR-MAE minus its MAE row, paired over the same seeds, with its interval. "
    "Over init: a pre-trained row minus the randomly initialised encoder."
)
DOCUMENT_HEAD = r"""% Every results table in one document: pdflatex all.tex (in this folder).
% The tables need \usepackage{booktabs}; geometry gives them about the width of a two-column paper's table*.
\documentclass{article}
\usepackage[a4paper,margin=2cm]{geometry}
\usepackage{booktabs}
\begin{document}
"""


def latex_escape(text: object) -> str:
    """``text`` (any value, as str) with LaTeX's special characters escaped."""
    return _SPECIAL.sub(lambda match: LATEX_SPECIALS[match.group(0)], str(text))


def latex_table(frame: pd.DataFrame, caption: str, label: str) -> str:
    """A ``table`` environment of ``frame`` (every cell, column name and the caption escaped; the label
    keeps only letters, digits and ``:.-``)."""
    escaped = frame.astype(object).map(latex_escape)
    escaped.columns = [latex_escape(c) for c in frame.columns]
    return escaped.to_latex(index=False, escape=False, caption=latex_escape(caption), label=_label(label))


def _label(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9:.-]", "-", label)


def term_tex(column: str, value: object) -> str:
    """One row label as the paper prints it (``16`` -> 16², ``0.75`` -> 75 %, ``5e-05`` -> 5e-5; MAE's
    lambda, blank or 0, -> 0)."""
    if column == "lam":
        return _lam_text(0.0 if blank(value) or value == "" else float(str(value)))
    if blank(value) or value == "":
        return ""
    if column == "patch_size":
        return f"${int(float(str(value)))}^2$"
    if column == "mask_ratio":
        return f"{float(str(value)) * 100:g}\\%"
    if column == "pretrain_epochs":
        return f"{int(float(str(value)))}"
    names = PAPER_NAMES.get("dataset" if column.endswith("dataset") else column, {})
    return latex_escape(names.get(str(value), str(value).replace("_", " ") if column == "metric" else value))


def _lam_text(lam: float) -> str:
    if not lam:
        return "0"
    mantissa, exponent = f"{lam:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def _label_columns(frame: pd.DataFrame) -> tuple[dict[str, list[str]], list[str]]:
    """The row-label columns whose rows differ, as the paper prints them; the others as 'Header: value' notes.
    A lambda of 0 is MAE's (no NoR term); the paper prints a dataset's metric beside it ("ADE20K (mIoU)")."""
    labels: dict[str, list[str]] = {}
    shared = []
    for column, header in LABEL_HEADERS.items():
        if column not in frame:
            continue
        values = [v for v in frame[column] if not blank(v) and v != "" and not (column == "lam" and not float(v))]
        distinct = sorted({term_tex(column, v) for v in values})
        folded = column in ("eval", "metric") and "eval_dataset" in labels
        if len(distinct) > 1 and not folded:
            labels[column] = [term_tex(column, v) for v in frame[column]]
        elif len(distinct) == 1 and not folded:
            shared.append(f"{header}: {distinct[0]}")
        if column == "eval_dataset" and column in labels and "metric" in frame:
            labels[column] = [
                text + (f" ({term_tex('metric', metric)})" if text and metric != "top1" else "")
                for text, metric in zip(labels[column], frame["metric"])
            ]
    return labels, shared


def _number_cells(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The paper's number (with its gain, as the paper prints it), ours with its interval and the differences;
    a column no row has is left out. A row without ours says why (not run, cited)."""
    rows = [row for _, row in frame.iterrows()]

    def paper(row: pd.Series) -> str:
        if blank(row.get("paper")):
            return ""
        gain = row.get("gain_paper")
        digits = metric_digits(row.get("metric"))
        return number_text(row["paper"], digits) + ("" if blank(gain) else f" ({number_text(gain, digits, True)})")

    cells = {
        "paper": [paper(row) for row in rows],
        "ours": [row_number_text(row, "ours", "ours_low", "ours_high", "ours_se", False) for row in rows],
        "delta": [row_number_text(row, "delta", "", "", "", True) for row in rows],
        "gain_ours": [row_number_text(row, "gain_ours", "gain_low", "gain_high", "gain_se", True) for row in rows],
        "over_init": [row_number_text(row, "over_init", "over_init_low", "over_init_high", "", True) for row in rows],
    }
    cells = {column: [latex_escape(cell) for cell in column_cells] for column, column_cells in cells.items()}
    cells["ours"] = [
        cell or latex_escape(str(row["status"]).replace("_", " ")) for cell, row in zip(cells["ours"], rows)
    ]
    return {column: column_cells for column, column_cells in cells.items() if any(column_cells)}


def _body(columns: dict[str, list[str]]) -> list[str]:
    """The table's rows grouped by the first column (its values in the order they first come), as the paper
    groups them: the first column's value printed once per group, a little space between groups."""
    first = next(iter(columns.values()))
    order = sorted(range(len(first)), key=lambda index: first.index(first[index]))
    lines = []
    for previous, index in zip([None, *order], order):
        cells = [column[index] for column in columns.values()]
        if previous is not None and first[index] == first[previous]:
            cells[0] = ""
        elif previous is not None:
            lines.append(r"\addlinespace")
        lines.append(" & ".join(cells) + r" \\")
    return lines


def paper_table_tex(frame: pd.DataFrame, caption: str, notes: list[str], label: str) -> str:
    """One table in the paper's layout: the row labels that differ, then the numbers; the caption short and
    ``notes`` (plain text: the scale, its mapping, how to read the numbers) in small type under the table."""
    labels, shared = _label_columns(frame)
    columns = {**labels, **_number_cells(frame)}
    headers = [LABEL_HEADERS.get(c) or NUMBER_HEADERS[c] for c in columns]
    shared_note = [f"Shared by the rows that have them: {'; '.join(shared)}."] if shared else []
    lines = [
        rf"% {label}: needs \usepackage{{booktabs}} in the preamble (all.tex in this folder is a whole document).",
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{_label(label)}}}",
        r"\footnotesize",
        r"\setlength{\tabcolsep}{4pt}",
        rf"\begin{{tabular}}{{{'l' * len(labels)}{'r' * (len(columns) - len(labels))}}}",
        r"\toprule",
        " & ".join(headers) + r" \\",
        r"\midrule",
        *_body(columns),
        r"\bottomrule",
        r"\end{tabular}",
        r"\par\smallskip\raggedright",
        " ".join([*shared_note, *(latex_escape(note) for note in [*notes, NUMBER_NOTE])]),
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def document(tables: list[str] | list[Path], out: Path) -> str:
    """``all.tex``: an article that inputs each table (paths relative to ``out``'s folder), one per page."""
    inputs = []
    for table in tables:
        relative = Path(os.path.relpath(Path(table).resolve(), out.resolve().parent)).with_suffix("")
        inputs += [rf"\input{{{relative.as_posix()}}}", r"\clearpage"]
    return DOCUMENT_HEAD + "\n".join(inputs) + "\n\\end{document}\n"
