"""Checks that LaTeX text compiles as far as can be told without LaTeX: specials escaped, braces balanced."""

import re

SPECIALS = "\\&%$#_{}~^"

# Escapes and the commands a table environment is written with; what is left must hold no special.
_ESCAPES = re.compile(
    r"\\(?:textbackslash|textasciitilde|textasciicircum)\{\}|\$\\(?:pm|times|rightarrow)\$|\\[&%$#_{}]"
)
_COMMANDS = re.compile(r"\\(?:begin|end|caption|label)\{|\\(?:toprule|midrule|bottomrule)\b|\\\\$")


def assert_compilable_text(text):
    """No special character outside an escape; braces balanced."""
    rest = _ESCAPES.sub("", text)
    assert not set(rest) & set(SPECIALS), f"unescaped special in {text!r}: {rest!r}"


def assert_compilable_tex(tex):
    """A tabular of escaped cells: braces balance, and outside the table's own commands, the column
    separators ' & ' and the row ends, every special character is escaped."""
    braces = 0
    for char in _ESCAPES.sub("", tex):
        braces += {"{": 1, "}": -1}.get(char, 0)
        assert braces >= 0, "a closing brace before its opening one"
    assert braces == 0, "unbalanced braces"
    for line in tex.splitlines():
        if line.startswith("\\begin{tabular}"):
            continue
        line = re.sub(r"\\(?:caption|label|begin|end)\{(.*)\}$", r"\1", line)
        line = _COMMANDS.sub("", line.rstrip()).replace(" & ", " ")
        assert_compilable_text(line)
