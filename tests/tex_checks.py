"""Checks that LaTeX text compiles as far as can be told without LaTeX: specials escaped, braces balanced,
no character that the default fonts print as another glyph (``<`` ``>`` ``|``); and, where pdflatex is
installed, a compile that says whether anything runs wider than the text."""

import re
import shutil
import subprocess

SPECIALS = "\\&%$#_{}~^"
# Characters the default (OT1) fonts print as other glyphs: "->" shows as "-¿", "||" as dashes.
FONT_SPECIALS = "<>|"

# Escapes and the commands a table environment is written with; what is left must hold no special.
_ESCAPES = re.compile(
    r"\\(?:textbackslash|textasciitilde|textasciicircum|textless|textgreater|textbar)\{\}"
    r"|\$\\(?:pm|times|rightarrow|to|lambda)\$|\$-\$|\$\d+\^\d+\$|\\[&%$#_{}]"
)
_COMMANDS = re.compile(
    r"\\(?:begin|end|caption|label)\{|\\(?:toprule|midrule|bottomrule|addlinespace|centering|footnotesize)\b"
    r"|\\par\\smallskip\\raggedright|\\setlength\{\\tabcolsep\}\{\d+pt\}|\\\\$"
)


def assert_compilable_text(text):
    """No special character outside an escape; braces balanced."""
    rest = _ESCAPES.sub("", text)
    assert not set(rest) & set(SPECIALS + FONT_SPECIALS), f"unescaped special in {text!r}: {rest!r}"


def assert_compilable_tex(tex):
    """A tabular of escaped cells: braces balance, and outside the table's own commands, the column
    separators ' & ' and the row ends, every special character is escaped (``%`` comment lines aside)."""
    braces = 0
    for char in _ESCAPES.sub("", tex):
        braces += {"{": 1, "}": -1}.get(char, 0)
        assert braces >= 0, "a closing brace before its opening one"
    assert braces == 0, "unbalanced braces"
    for line in tex.splitlines():
        if line.startswith(("\\begin{tabular}", "% ")):
            continue
        line = re.sub(r"\\(?:caption|label|begin|end)\{(.*)\}(?:\[\w+\])?$", r"\1", line)
        line = _COMMANDS.sub("", line.rstrip()).replace(" & ", " ")
        assert_compilable_text(line)


def compile_tex(folder, document="all.tex"):
    """pdflatex ``document`` in ``folder`` (twice, as cross-references need): the log, after asserting that
    it compiled; the test is skipped only where pdflatex is not installed."""
    import pytest

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    command = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document]
    for _ in range(2):
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
        log = (folder / document).with_suffix(".log").read_text(errors="replace")
        assert done.returncode == 0, f"pdflatex failed:\n{log[-3000:]}"
    return log
