"""The tables' statistics against scipy's and by hand, and the LaTeX escaping of the .tex tables."""

import math

import pandas as pd
import pytest
from scipy import stats
from tex_checks import SPECIALS, assert_compilable_tex, assert_compilable_text

from normae.report.latex import LATEX_SPECIALS, latex_escape, latex_table
from normae.report.statistics import (
    Estimate,
    binomial_se,
    gain_sign,
    mean_interval,
    paired_difference,
    verdict,
)


def test_mean_interval_by_hand_and_against_scipy():
    # 1, 2, 3: mean 2, s 1, sem 1/sqrt(3), t(0.975, 2) = 4.302653.
    estimate = mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert (estimate.mean, estimate.low, estimate.high, estimate.n) == pytest.approx((2.0, 2 - half, 2 + half, 3))
    values = [71.2, 70.4, 72.9, 70.8, 71.5]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=stats.tmean(values), scale=stats.sem(values))
    assert (mean_interval(values).low, mean_interval(values).high) == pytest.approx((low, high))
    one = mean_interval([5.0])
    assert (one.mean, one.low, one.high, one.n) == (5.0, None, None, 1)
    with pytest.raises(ValueError):
        mean_interval([])


def test_paired_difference_is_the_paired_t_tests_interval():
    nor, mae = [20.5, 21.0, 19.8, 22.1], [20.0, 20.1, 19.9, 21.0]
    result = stats.ttest_rel(nor, mae).confidence_interval(0.95)
    difference = paired_difference(nor, mae)
    assert difference.mean == pytest.approx(sum(a - b for a, b in zip(nor, mae)) / 4)
    assert (difference.low, difference.high) == pytest.approx((result.low, result.high))
    # By hand: differences 1, 3: mean 2, s sqrt(2), sem 1, t(0.975, 1) = 12.706205.
    by_hand = paired_difference([3.0, 5.0], [2.0, 2.0])
    assert (by_hand.low, by_hand.high) == pytest.approx((2 - 12.706204736174707, 2 + 12.706204736174707))
    with pytest.raises(ValueError, match="one per seed"):
        paired_difference([1.0, 2.0], [1.0])


def test_binomial_standard_error():
    assert binomial_se(20.0, 300) == pytest.approx(100 * math.sqrt(0.2 * 0.8 / 300))
    assert binomial_se(50.0, 100) == pytest.approx(5.0)
    assert binomial_se(0.0, 10) == 0.0
    with pytest.raises(ValueError):
        binomial_se(50.0, 0)


@pytest.mark.parametrize(
    "low, high, paper, expected",
    [
        (0.5, 2.0, 3.0, "reproduced"),
        (-0.5, 2.0, 3.0, "within noise"),
        (0.0, 2.0, 3.0, "within noise"),
        (-2.0, -0.5, 3.0, "reversed"),
        (-2.0, -0.5, -1.0, "reproduced"),
        (0.5, 2.0, None, "NoR-MAE ahead"),
        (-2.0, -0.5, 0.0, "NoR-MAE behind"),
        (None, None, 3.0, "one seed"),
    ],
)
def test_verdicts(low, high, paper, expected):
    n = 1 if low is None else 3
    assert verdict(Estimate(0.0 if low is None else (low + high) / 2, low, high, n), paper) == expected


def test_a_gain_of_exactly_zero_is_a_tie():
    assert gain_sign(0.0, 7.2) == "tie"
    assert gain_sign(0.3, 7.2) == "same" and gain_sign(-0.3, 7.2) == "opposite"
    assert gain_sign(0.3, None) == "no paper gain"


@pytest.mark.parametrize("char", list(SPECIALS))
def test_each_special_character_is_escaped(char):
    escaped = latex_escape(f"a{char}b")
    assert escaped == f"a{LATEX_SPECIALS[char]}b"
    assert_compilable_text(escaped)


def test_escaping_is_one_pass():
    assert latex_escape("\\{}") == r"\textbackslash{}\{\}"
    assert latex_escape("50% of x_1 & y ± 2") == r"50\% of x\_1 \& y $\pm$ 2"
    assert latex_escape(0.75) == "0.75"


def test_a_table_of_specials_stays_compilable():
    frame = pd.DataFrame({"col_1": [SPECIALS, "vit_base (ran vit_mini)"], "100%": ["a ± b", "#1 {x}"]})
    tex = latex_table(frame, f"caption {SPECIALS} 95 % _ & ~", "tab:t_1")
    assert_compilable_tex(tex)
    assert r"\label{tab:t-1}" in tex


def test_the_tex_check_catches_what_would_not_compile():
    with pytest.raises(AssertionError, match="unescaped special"):
        assert_compilable_tex(pd.DataFrame({"a": ["x_1"]}).to_latex(index=False, escape=False))
    with pytest.raises(AssertionError, match="unbalanced"):
        assert_compilable_tex(r"\begin{tabular}{l}" + "\n{x\n" + r"\end{tabular}")
