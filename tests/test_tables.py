"""Paper-vs-ours tables: numbers come from the planned run folders, gains pair NoR-MAE with its MAE row."""

import dataclasses
import json
import subprocess
import sys

import pandas as pd
import pytest
from scipy import stats
from tex_checks import assert_compilable_tex

from normae.experiments import plan as normae_plan
from normae.report.table_text import verdicts_markdown
from normae.report.tables import MissingResultError, add_gains, all_runs_frame, table_frame, write_table


def fake_runs(root, plan, run_ids, top1_of, eval_images=None):
    specs = {**plan.pretrain, **plan.evaluations}
    for run_id in run_ids:
        folder = root / "results" / "runs" / run_id
        folder.mkdir(parents=True)
        summary = {
            "run_id": run_id,
            "spec": specs[run_id].to_dict(),
            "top1": top1_of(run_id),
            "final": {"loss": 1.0},
            "epochs": 1,
            **({"eval_images": eval_images} if eval_images else {}),
        }
        (folder / "summary.json").write_text(json.dumps(summary))


def test_table_numbers_are_read_from_each_rows_runs(tmp_path, tiny_plan):
    table = tiny_plan.tables["T6"]
    values = {run_id: float(i) for i, run_id in enumerate(sorted(table.eval_ids()))}
    fake_runs(tmp_path, tiny_plan, table.eval_ids(), values.get)
    frame = table_frame(table, tiny_plan, tmp_path)
    assert len(frame) == len(table.rows) == 6
    for record, row in zip(frame.itertuples(), table.rows):
        assert record.ours == values[row.eval_ids[0]]
        assert record.paper == row.paper_value
        assert record.delta == pytest.approx(record.ours - record.paper)
        assert record.scale == "tiny"
    nor = frame[frame["method"] == "nor_mae"].iloc[0]
    mae = frame[(frame["method"] == "mae") & (frame["mask_ratio"] == nor["mask_ratio"])].iloc[0]
    assert nor["gain_ours"] == pytest.approx(nor["ours"] - mae["ours"])
    assert nor["gain_paper"] == pytest.approx(nor["paper"] - mae["paper"])


def test_a_missing_run_is_an_error_not_a_blank(tmp_path, tiny_plan):
    table = tiny_plan.tables["T6"]
    present = sorted(table.eval_ids())[1:]
    fake_runs(tmp_path, tiny_plan, present, lambda run_id: 50.0)
    with pytest.raises(MissingResultError, match="summary.json does not exist"):
        table_frame(table, tiny_plan, tmp_path)


def test_gains_pair_rows_that_differ_only_in_the_nor_terms():
    frame = pd.DataFrame(
        [
            {"method": "mae", "model": "vit_tiny", "mask_ratio": 0.75, "paper": 70.0, "ours": 20.0},
            {
                "method": "nor_mae",
                "model": "vit_tiny",
                "mask_ratio": 0.75,
                "lam": 5e-5,
                "cnp": "paper",
                "paper": 73.0,
                "ours": 19.0,
            },
            {
                "method": "nor_mae",
                "model": "vit_small",
                "mask_ratio": 0.75,
                "lam": 5e-5,
                "cnp": "paper",
                "paper": 80.0,
                "ours": 25.0,
            },
        ]
    )
    for column in normae_plan.REPORTED_KEYS + ("cnp", "nor_variant", "pretrain_dataset", "pretrain_epochs"):
        if column not in frame:
            frame[column] = None
    gains = add_gains(frame)
    assert gains.loc[1, "gain_paper"] == 3.0 and gains.loc[1, "gain_ours"] == -1.0
    assert gains.loc[1, "gain_sign"] == "opposite" and gains.loc[1, "verdict"] == "one seed"
    assert pd.isna(gains.loc[2, "gain_paper"]), "vit_small has no MAE row to pair with"


def test_written_tables_say_the_scale(tmp_path, tiny_plan):
    table = tiny_plan.tables["T6"]
    fake_runs(tmp_path, tiny_plan, table.eval_ids(), lambda run_id: 20.0)
    paths = write_table(table_frame(table, tiny_plan, tmp_path), table, tiny_plan, tmp_path / "tables")
    assert [p.name for p in paths] == ["table6.csv", "table6.md", "table6.tex", "table6.html"]
    markdown = paths[1].read_text()
    assert "measured at the tiny scale" in markdown and "patch sizes 16 -> 4" in markdown
    assert "over 3 distinct run pairs: ours 0.00 on average" in markdown and "Verdicts: 3 one seed" in markdown
    assert "3 tie" in markdown, "a gain of exactly 0 is a tie"
    assert "\\begin{table}" in paths[2].read_text()


def test_all_runs_has_a_row_per_planned_run(tmp_path, tiny_plan):
    runs = [*tiny_plan.pretrain, *tiny_plan.evaluations]
    fake_runs(tmp_path, tiny_plan, runs, lambda run_id: 10.0)
    frame = all_runs_frame(tiny_plan, tmp_path)
    assert sorted(frame["run_id"]) == sorted(runs)
    assert set(frame["stage"]) == {"pretrain", "finetune", "knn", "segment"}
    assert {"lam", "mask_ratio", "final_loss", "tables"} <= set(frame.columns)


def test_spec_command_writes_the_planned_spec(tmp_path, tiny_plan):
    run_id = next(iter(tiny_plan.pretrain))
    out = tmp_path / "spec.json"
    command = [sys.executable, "-m", "normae.cli", "spec", run_id, "--scale", "tiny", "--out", str(out)]
    subprocess.run(command, check=True)
    assert json.loads(out.read_text()) == json.loads(tiny_plan.pretrain[run_id].to_json())
    wrong = subprocess.run(command[:4] + ["no-such-run"] + command[5:], capture_output=True, text=True)
    assert wrong.returncode == 2 and "not in the plan" in wrong.stderr


@pytest.fixture(scope="module")
def shared_plan():
    """The tiny plan with one lambda factor for ViT-Small and ViT-Base: both then run one vit_mini pair."""
    scale = normae_plan.load_scale("tiny")
    factors = {**scale.lam_scale, "vit_base/16": scale.lam_scale["vit_small/16"]}
    return normae_plan.expand(normae_plan.load_experiments(), dataclasses.replace(scale, lam_scale=factors))


def test_one_evaluation_carries_its_binomial_error_and_the_model_column_says_what_ran(tmp_path, shared_plan):
    tiny_plan = shared_plan
    table = tiny_plan.tables["T3"]
    fake_runs(tmp_path, tiny_plan, table.eval_ids(), lambda run_id: 20.0, eval_images=400)
    frame = table_frame(table, tiny_plan, tmp_path)
    ran = frame[frame["status"] == "run"]
    assert ran["ours_se"].tolist() == pytest.approx([2.0] * len(ran)), "sqrt(0.2 * 0.8 / 400) = 2 points"
    assert set(ran["verdict"].dropna()) == {"one seed"} and set(ran["gain_sign"].dropna()) == {"tie"}
    markdown = write_table(frame, table, tiny_plan, tmp_path / "tables")[1].read_text()
    assert "| 20.00 ± 2.00 " in markdown and "| +0.00" not in markdown and "| -0.00" not in markdown
    assert "vit_base (ran vit_mini)" in markdown and "vit_tiny (ran vit_micro)" in markdown
    # Small and Base both ran vit_mini: one run pair, counted once.
    assert "over 2 distinct run pairs (3 rows; rows that ran the same runs count once)" in markdown


@pytest.mark.slow
def test_several_seeds_give_intervals_paired_differences_and_verdicts(tmp_path):
    seeded = normae_plan.expand(normae_plan.load_experiments(), normae_plan.load_scale("tiny"), seeds=[0, 1, 2])
    table = seeded.tables["T6"]
    noise = {0: 0.0, 1: 1.0, 2: -0.5}
    top1 = {}
    for row in table.rows:
        for seed, run_id in zip(seeded.seeds, row.eval_ids):
            gain = 2.0 + 0.1 * seed if row.terms["method"] == "nor_mae" else 0.0
            top1[run_id] = 30.0 + noise[seed] + gain + 5 * row.terms["mask_ratio"]
    fake_runs(tmp_path, seeded, table.eval_ids(), top1.get)
    frame = table_frame(table, seeded, tmp_path)
    nor = frame[frame["method"] == "nor_mae"].iloc[0]
    mae = frame[(frame["method"] == "mae") & (frame["mask_ratio"] == nor["mask_ratio"])].iloc[0]
    assert nor["seeds"] == 3 and pd.isna(nor["ours_se"])
    half = stats.t.ppf(0.975, 2) * stats.sem([float(v) for v in nor["ours_values"].split()])
    assert (nor["ours_low"], nor["ours_high"]) == pytest.approx((nor["ours"] - half, nor["ours"] + half))
    expected = stats.ttest_rel([2.0, 3.1, 1.7], [0.0, 1.0, -0.5]).confidence_interval(0.95)
    assert nor["gain_ours"] == pytest.approx(2.1)
    assert (nor["gain_low"], nor["gain_high"]) == pytest.approx((expected.low, expected.high))
    assert nor["verdict"] == "reproduced" and pd.isna(mae["verdict"])
    markdown = write_table(frame, table, seeded, tmp_path / "tables")[1].read_text()
    assert "| reproduced " in markdown and "Verdicts: 3 reproduced" in markdown
    assert f"+2.10 [{expected.low:.2f}, {expected.high:.2f}]" in markdown


def test_written_tex_escapes_every_cell_and_the_caption(tmp_path, tiny_plan):
    table = tiny_plan.tables["T3"]
    fake_runs(tmp_path, tiny_plan, table.eval_ids(), lambda run_id: 12.5, eval_images=300)
    tex = write_table(table_frame(table, tiny_plan, tmp_path), table, tiny_plan, tmp_path / "tables")[2].read_text()
    assert_compilable_tex(tex)
    assert r"vit\_base $\to$ vit\_mini" in tex and r"95 \% Student-t" in tex and r"$\pm$" in tex
    # top-1 in one format (2 decimals), a sign only on differences
    assert "\nViT-Base & MAE &  & 86.80 & 12.50 $\\pm$ 1.91 & -74.30 &  \\\\\n" in tex, "paper's labels, then numbers"


def test_verdicts_summarise_each_table_once_per_run_pair(tmp_path, shared_plan):
    tiny_plan = shared_plan
    paths = []
    for name in ("T3", "T6"):
        table = tiny_plan.tables[name]
        fake_runs(
            tmp_path,
            tiny_plan,
            table.eval_ids() - {p.parent.name for p in tmp_path.rglob("summary.json")},
            lambda r: 20.0,
        )
        paths.append(write_table(table_frame(table, tiny_plan, tmp_path), table, tiny_plan, tmp_path / "tables")[0])
    summary = verdicts_markdown(paths)
    assert "| table3 | 2 | 2 one seed | 0.00 | +3.48 |" in summary  # a zero has no sign
    assert "| table6 | 3 | 3 one seed |" in summary
