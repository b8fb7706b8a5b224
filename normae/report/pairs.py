"""A table's rows compared with each other over seeds: NoR-MAE minus its MAE row (``add_gains``) and a
pre-trained row minus the randomly initialised encoder (``add_pretraining_effect``), each paired over the
seeds both rows ran, with its 95 % Student-t interval and a verdict."""

from __future__ import annotations

import math

import pandas as pd

from normae.experiments.config import NO_PRETRAINING
from normae.report.statistics import gain_sign, paired_difference, verdict
from normae.report.table_text import TERM_COLUMNS
from normae.spec import BASE_OF_NOR, METHODS

# Terms that make a NoR-MAE row differ from the MAE row it is compared with.
NOR_ONLY_TERMS = ("method", "lam", "cnp", "nor_variant")


def _seed_values(row: pd.Series) -> dict[int, float]:
    """A row's value per seed (``ours_values`` by ``ours_seeds``; positions where no seeds are listed), or its
    one ``ours`` where the frame holds no list."""
    text = row.get("ours_values")
    values = [float(v) for v in text.split()] if isinstance(text, str) and text.strip() else [float(row["ours"])]
    seeds_text = row.get("ours_seeds")
    if isinstance(seeds_text, str) and len(seeds_text.split()) == len(values):
        return dict(zip((int(s) for s in seeds_text.split()), values))
    return dict(enumerate(values))


def _paired(treated: pd.Series, control: pd.Series):
    """The paired difference over the seeds both rows ran (a sweep point may run fewer seeds than its MAE
    row), or None where they share none."""
    a, b = _seed_values(treated), _seed_values(control)
    seeds = sorted(set(a) & set(b))
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds]) if seeds else None


def _matching(frame: pd.DataFrame, row: pd.Series, keys: list[str]) -> pd.DataFrame:
    return frame[(frame[keys].fillna("") == pd.Series({k: row[k] for k in keys}).fillna("")).all(axis=1)]


def _pair_key(row: pd.Series, index: object) -> str:
    """Which runs a row read: rows that read the same runs (two paper models mapped to one) are one pair."""
    for column in ("eval_ids", "pretrain_ids"):
        if isinstance(row.get(column), str) and row[column]:
            return row[column]
    return f"row {index}"


def add_gains(frame: pd.DataFrame) -> pd.DataFrame:
    """NoR-MAE minus its MAE row (same terms otherwise), as the paper reports it and as we measured it:
    our gain is the mean paired difference over the same seeds, with its 95 % Student-t interval
    (several seeds) or the binomial standard error of the two evaluations (one seed), and a verdict."""
    frame = frame.copy()
    frame["delta"] = frame["ours"] - frame["paper"]
    for column in ("gain_paper", "gain_ours", "gain_low", "gain_high", "gain_se"):
        frame[column] = math.nan
    for column in ("verdict", "gain_sign", "pair"):
        frame[column] = None
    keys = [c for c in TERM_COLUMNS if c not in NOR_ONLY_TERMS]
    for index, row in frame[frame["method"].isin(BASE_OF_NOR)].iterrows():  # NoR-MAE, Sup NoR-MAE, NoR-DMAE
        match = _matching(frame[frame["method"] == BASE_OF_NOR[row["method"]]], row, keys)
        if not len(match):
            continue
        partner = match.iloc[0]
        gain_paper = row["paper"] - partner["paper"]
        frame.loc[index, "gain_paper"] = gain_paper
        if pd.isna(row["ours"]) or pd.isna(partner["ours"]):
            continue
        difference = _paired(row, partner)
        if difference is None:
            continue
        frame.loc[index, ["gain_ours", "gain_low", "gain_high"]] = [
            difference.mean,
            math.nan if difference.low is None else difference.low,
            math.nan if difference.high is None else difference.high,
        ]
        errors = [e for e in (row.get("ours_se"), partner.get("ours_se")) if isinstance(e, float) and math.isfinite(e)]
        if difference.n == 1 and len(errors) == 2:
            frame.loc[index, "gain_se"] = math.hypot(*errors)
        paper = None if pd.isna(gain_paper) else float(gain_paper)
        frame.loc[index, "verdict"] = verdict(difference, paper)
        frame.loc[index, "gain_sign"] = gain_sign(difference.mean, paper)
        frame.loc[index, "pair"] = f"{_pair_key(row, index)} vs {_pair_key(partner, partner.name)}"
    return frame


def add_pretraining_effect(frame: pd.DataFrame) -> pd.DataFrame:
    """Where a table has a ``random_init`` row (the encoder as initialised, evaluated alike): each pre-trained
    row minus it, paired over the same seeds, with its 95 % interval (``over_init``, ``_low``, ``_high``).
    Pre-training visibly matters where the interval lies above 0."""
    frame = frame.copy()
    for column in ("over_init", "over_init_low", "over_init_high"):
        frame[column] = math.nan
    floors = frame[(frame["method"] == NO_PRETRAINING) & frame["ours"].notna()]
    if floors.empty:
        return frame
    keys = [c for c in TERM_COLUMNS if c not in NOR_ONLY_TERMS]
    pretrained = frame["method"].isin(METHODS)
    for index, row in frame[pretrained & frame["ours"].notna()].iterrows():
        match = _matching(floors, row, keys)
        difference = _paired(row, match.iloc[0]) if len(match) else None
        if difference is not None:
            frame.loc[index, ["over_init", "over_init_low", "over_init_high"]] = [
                difference.mean,
                math.nan if difference.low is None else difference.low,
                math.nan if difference.high is None else difference.high,
            ]
    return frame
