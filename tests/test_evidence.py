"""The evidence table: the cpu scale's plan (seeds per grid, the random-init floor, lambda rescaled with the
paper's ratios kept) and its statistics (pairs over the seeds both rows ran, the gain over random init)."""

import re

import pandas as pd
import pytest
from scipy import stats
from test_tables import fake_runs

from normae.errors import ConfigError
from normae.experiments import plan as normae_plan
from normae.experiments.config import NO_PRETRAINING
from normae.experiments.faithful import lam_factor_key, scaled_lam
from normae.report.tables import table_frame


@pytest.fixture(scope="module")
def cpu_plan():
    return normae_plan.expand(normae_plan.load_experiments(), normae_plan.load_scale("cpu"))


def _rows(table, **terms):
    return [row for row in table.rows if all(row.terms.get(k) == v for k, v in terms.items())]


def test_cpu_scale_runs_the_evidence_table_with_its_own_seeds(cpu_plan):
    assert list(cpu_plan.tables) == ["evidence", "evidence_long"] and cpu_plan.seeds == [0, 1, 2, 3, 4]
    table = cpu_plan.tables["evidence"]
    assert {row.status for row in table.rows} == {"run"}
    for row in table.rows:
        seeds = [cpu_plan.evaluations[run_id].seed for run_id in row.eval_ids]
        assert seeds == ([0, 1, 2] if row.terms.get("lam", 0) > 5e-5 else [0, 1, 2, 3, 4])
        assert all(cpu_plan.evaluations[run_id].eval_samples is None for run_id in row.eval_ids)  # all 10,000


def test_the_evidence_past_one_epoch_runs_five_epochs_scored_by_knn_and_fine_tuning(cpu_plan):
    """evidence_long at the cpu scale: the three deciding rows and the floor, 5 epochs (Table 7's 1000 for 200),
    3 seeds, each pre-training scored by weighted k-NN and by the one-epoch fine-tuning; MAE's k-NN is paired
    with NoR-MAE's of the same seed and schedule."""
    table = cpu_plan.tables["evidence_long"]
    assert {row.status for row in table.rows} == {"run"}
    assert {(row.terms["method"], row.terms.get("cnp"), row.terms["eval"]) for row in table.rows} == {
        (method, cnp, protocol)
        for method, cnp in ((NO_PRETRAINING, None), ("mae", None), ("nor_mae", "paper"), ("nor_mae", "random"))
        for protocol in ("knn", "finetune")
    }
    for row in table.rows:
        assert [cpu_plan.evaluations[i].seed for i in row.eval_ids] == [0, 1, 2]
        assert {cpu_plan.pretrain[i].epochs for i in row.pretrain_ids} <= {5}
    finetunes = [cpu_plan.evaluations[i] for row in table.rows if row.terms["eval"] == "finetune" for i in row.eval_ids]
    assert {(f.epochs, f.warmup_epochs, f.train_samples) for f in finetunes} == {(1, 0.05, None)}  # all 60,000


@pytest.mark.parametrize("scale", ["gpu", "paper"])
def test_a_scale_whose_evidence_trains_long_runs_no_row_of_the_evidence_past_one_epoch(scale):
    loaded = normae_plan.load_scale(scale)
    loaded.tables = ("evidence_long",)  # quick to plan
    table = normae_plan.expand(normae_plan.load_experiments(), loaded).tables["evidence_long"]
    assert {row.status for row in table.rows} == {"not_run"} and len(table.rows) == 8
    assert all(row.reason.startswith(f"scale {scale}: ") and "cpu scale's question" in row.reason for row in table.rows)


def test_random_init_rows_evaluate_an_untrained_encoder_per_seed(cpu_plan):
    (row,) = _rows(cpu_plan.tables["evidence"], method=NO_PRETRAINING)
    assert row.pretrain_ids == []
    specs = [cpu_plan.evaluations[run_id] for run_id in row.eval_ids]
    assert {spec.init for spec in specs} == {"none"} and [spec.seed for spec in specs] == [0, 1, 2, 3, 4]
    mae = cpu_plan.pretrain[_rows(cpu_plan.tables["evidence"], method="mae")[0].pretrain_ids[0]]
    assert {(s.model, s.patch_size, s.img_size) for s in specs} == {(mae.model, mae.patch_size, mae.img_size)}


def test_lambda_is_rescaled_and_keeps_the_papers_ratios(cpu_plan, tiny_plan):
    table = cpu_plan.tables["evidence"]
    for row in _rows(table, method="nor_mae"):
        spec = cpu_plan.pretrain[row.pretrain_ids[0]]
        assert spec.lam == pytest.approx(row.terms["lam"] * (120 if row.terms["cnp"] == "authors_code" else 50))
    assert "lambda x 50 for vit_tiny/16, 120 for vit_tiny/16/authors_code" in " ".join(table.mapping)
    for plan in (cpu_plan, tiny_plan):
        for table in plan.tables.values():
            factors = {}
            for row in _rows(table, method="nor_mae"):
                if row.pretrain_ids:
                    ran = plan.pretrain[row.pretrain_ids[0]].lam
                    terms = [row.terms.get(k) for k in ("model", "patch_size", "cnp", "nor_variant", "mask_ratio")]
                    factors.setdefault(lam_factor_key(plan.scale.lam_scale, *terms), set()).add(
                        round(ran / row.terms["lam"], 6)
                    )
            assert all(len(found) == 1 for found in factors.values())  # one factor each: the paper's ratios kept


def test_a_scale_without_a_factor_for_a_row_names_the_command():
    row = {"model": "vit_tiny", "patch_size": 16, "lam": 5e-5, "cnp": "paper", "mask_ratio": 0.5}
    assert scaled_lam(None, row) == (5e-5, 1.0)
    assert scaled_lam({"vit_tiny/16": 50}, row) == (0.0025, 50.0)
    factors = {"vit_tiny/16": 50, "vit_tiny/16/authors_code": 120, "vit_tiny/16/mr0.5": 200}
    assert scaled_lam(factors, row) == (0.01, 200.0)  # a qualified factor wins
    assert scaled_lam(factors, {**row, "cnp": "authors_code"}) == (0.006, 120.0)
    with pytest.raises(ConfigError, match="normae nor-share"):
        scaled_lam({"vit_tiny/16": 50}, {**row, "model": "vit_small"})


def test_a_scale_naming_an_unknown_table_is_an_error():
    scale = normae_plan.load_scale("cpu")
    scale.tables = ("evidence", "T99")
    with pytest.raises(ConfigError, match="T99"):
        normae_plan.expand(normae_plan.load_experiments(), scale)


def test_pairs_use_the_seeds_both_rows_ran_and_the_floor_is_random_init(tmp_path, cpu_plan):
    table = cpu_plan.tables["evidence"]
    top1 = {}
    for row in table.rows:
        for run_id in row.eval_ids:
            seed = cpu_plan.evaluations[run_id].seed
            method, lam = row.terms["method"], row.terms.get("lam", 0)
            base = {NO_PRETRAINING: 50.0, "mae": 70.0}.get(method, 70.0 + 1000 * lam)
            top1[run_id] = base + seed * (1.5 if method == NO_PRETRAINING else 1.0) + (seed % 2) * 0.3 * (lam > 1e-3)
    fake_runs(tmp_path, cpu_plan, table.eval_ids(), top1.get)
    frame = table_frame(table, cpu_plan, tmp_path)
    mae = frame[frame["method"] == "mae"].iloc[0]
    floor = frame[frame["method"] == NO_PRETRAINING].iloc[0]
    swept = frame[(frame["method"] == "nor_mae") & (frame["lam"] == 5e-3)].iloc[0]
    assert swept["seeds"] == 3 and mae["seeds"] == 5
    mae_values = [float(v) for v in mae["ours_values"].split()][:3]
    differences = [a - b for a, b in zip(map(float, swept["ours_values"].split()), mae_values)]
    expected = stats.ttest_1samp(differences, 0).confidence_interval(0.95)
    assert swept["gain_ours"] == pytest.approx(sum(differences) / 3)
    assert (swept["gain_low"], swept["gain_high"]) == pytest.approx((expected.low, expected.high))
    assert swept["verdict"] == "NoR-MAE ahead"
    over = [a - b for a, b in zip(map(float, mae["ours_values"].split()), map(float, floor["ours_values"].split()))]
    interval = stats.ttest_1samp(over, 0).confidence_interval(0.95)
    assert mae["over_init"] == pytest.approx(sum(over) / 5)
    assert (mae["over_init_low"], mae["over_init_high"]) == pytest.approx((interval.low, interval.high))
    assert pd.isna(floor["over_init"]) and pd.isna(floor["gain_ours"])


# ---------------------------------------------------------------- the decisive experiment (the paper scale)

DECISIVE = {
    (NO_PRETRAINING, None),
    ("mae", None),
    ("nor_mae", "paper"),
    ("nor_mae", "authors_code"),
    ("nor_mae", "random"),
}


@pytest.fixture(scope="module")
def paper_plan():
    return normae_plan.expand(normae_plan.load_experiments(), normae_plan.load_scale("paper"))


def test_the_paper_scales_evidence_table_is_the_decisive_experiment(paper_plan):
    """4 methods and the random-init floor x 3 protocols x 3 seeds at the paper's geometry and batches."""
    table, scale = paper_plan.tables["evidence"], paper_plan.scale
    decisive = [row for row in table.rows if row.terms.get("lam", 5e-5) == 5e-5]
    assert {(row.terms["method"], row.terms.get("cnp"), row.terms["eval"]) for row in decisive} == {
        (*kind, protocol) for kind in DECISIVE for protocol in ("finetune", "linprobe", "knn")
    }
    assert len(decisive) == 15 and {row.status for row in table.rows} == {"run"} and table.seeds == [0, 1, 2]
    for row in decisive:
        evaluations = [paper_plan.evaluations[run_id] for run_id in row.eval_ids]
        assert [spec.seed for spec in evaluations] == [0, 1, 2]
        assert {(spec.dataset, spec.model, spec.patch_size) for spec in evaluations} == {
            ("imagenet100", "vit_tiny", 16)
        }
        if row.terms["eval"] == "finetune":  # the paper's protocol: MAE's recipe, the paper scale's finetune block
            assert {(spec.epochs, spec.global_batch) for spec in evaluations} == {(100, scale.finetune["global_batch"])}
        if row.terms["method"] == NO_PRETRAINING:
            assert row.pretrain_ids == [] and {spec.init for spec in evaluations} == {"none"}
            continue
        pretrained = [paper_plan.pretrain[run_id] for run_id in row.pretrain_ids]
        assert [spec.seed for spec in pretrained] == [0, 1, 2]
        assert {(s.img_size, s.patch_size, s.model, s.epochs, s.global_batch) for s in pretrained} == {
            (224, 16, "vit_tiny", 200, 2048)
        }
        assert {s.lam for s in pretrained} == ({5e-5} if row.terms["method"] == "nor_mae" else {0.0})
    swept = [row for row in table.rows if row not in decisive]  # past the paper's range: k-NN, as at the cpu scale
    assert {row.terms["eval"] for row in swept} == {"knn"} and len(swept) == 3


def test_per_table_settings_change_only_their_table(paper_plan):
    """Without the paper scale's per_table entry for the evidence table, every other table plans the same runs,
    and the evidence table's runs then are a part of what the entry plans (the entry only adds runs)."""
    plain_scale = normae_plan.load_scale("paper")
    plain_scale.per_table = {name: settings for name, settings in plain_scale.per_table.items() if name != "evidence"}
    plain = normae_plan.expand(normae_plan.load_experiments(), plain_scale)
    for name, table in plain.tables.items():
        ids = table.pretrain_ids() | table.eval_ids()
        decisive = paper_plan.tables[name].pretrain_ids() | paper_plan.tables[name].eval_ids()
        assert ids == decisive if name != "evidence" else ids < decisive, name
    assert all(paper_plan.spec(run_id) == spec for run_id, spec in {**plain.pretrain, **plain.evaluations}.items())


def test_the_gpu_scale_says_its_evidence_table_is_a_stand_in(paper_plan):
    from normae.report.tables import header_lines

    gpu_scale = normae_plan.load_scale("gpu")
    gpu_scale.tables = ("evidence",)  # quick to plan
    gpu = normae_plan.expand(normae_plan.load_experiments(), gpu_scale)
    assert gpu.tables["evidence"].seeds is None  # the gpu scale's own seeds
    assert "one-GPU stand-in for the decisive experiment" in " ".join(header_lines(gpu.tables["evidence"], gpu))
    lines = header_lines(paper_plan.tables["evidence"], paper_plan)
    assert "seeds [0, 1, 2]" in lines[1] and any(line.startswith("The decisive experiment") for line in lines)
    assert not any("decisive" in line for line in header_lines(paper_plan.tables["T3"], paper_plan))


@pytest.mark.parametrize(
    "per_table, named",
    [({"T99": {"seeds": [0]}}, "per_table names ['T99']"), ({"SUPP": {"protocols": ["knn"]}}, "SUPP is a measurement")],
)
def test_per_table_settings_for_a_table_that_cannot_take_them_are_an_error(per_table, named):
    scale = normae_plan.load_scale("paper")
    scale.per_table, scale.tables = per_table, ("SUPP",)  # one table: quick to plan
    with pytest.raises(ConfigError, match=re.escape(named)):
        normae_plan.expand(normae_plan.load_experiments(), scale)


def test_plan_of_one_table_with_its_wall_time_on_n_gpus(capsys, tiny_plan):
    """`normae plan --table evidence --gpus 8`: that table only, its runs shared with the other tables of the
    whole plan, its device-hours and their wall time on 8 GPUs (the tiny scale: quick to plan)."""
    from normae.cli import main
    from normae.experiments.plan_report import plan_hours, wall_hours

    assert main(["plan", "--scale", "tiny", "--table", "evidence", "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if line and not line.startswith(" ")][2:] == [
        "evidence",
        "total estimate",
        "wall time on 8 GPUs",
    ]
    table = tiny_plan.tables["evidence"]
    hours = plan_hours(tiny_plan, table.pretrain_ids() | table.eval_ids())
    assert f"total estimate: {hours:.1f} device-hours" in out
    assert f"wall time on 8 GPUs: {wall_hours(hours, 8):.1f} hours (device-hours / GPUs" in out
    shared = {i for t in tiny_plan.tables.values() if t is not table for i in t.pretrain_ids() | t.eval_ids()}
    count = len((table.pretrain_ids() | table.eval_ids()) & shared)
    assert f"{count} of them shared with other tables" in out and count > 0  # counted against the whole plan
    assert wall_hours(10.0, 4) == 2.5
    assert main(["plan", "--scale", "paper", "--gpus", "0"]) == 2
    assert "--gpus 0" in capsys.readouterr().err
    assert main(["plan", "--scale", "paper", "--gpus", "8", "--ids"]) == 2
    assert "drop --ids" in capsys.readouterr().err


def test_the_decisive_experiment_gets_a_paired_verdict_per_protocol(tmp_path, paper_plan):
    """Fine-tuning shows the paper's gain on every seed, k-NN none: each protocol is paired with its own MAE row."""
    table = paper_plan.tables["evidence"]
    top1 = {}
    for row in table.rows:
        for run_id in row.eval_ids:
            seed = paper_plan.evaluations[run_id].seed
            gain = 7.0 + 0.2 * seed if (row.terms["method"], row.terms["eval"]) == ("nor_mae", "finetune") else 0.0
            top1[run_id] = {NO_PRETRAINING: 5.0}.get(row.terms["method"], 70.0) + seed + gain + 0.1 * (seed == 1)
    fake_runs(tmp_path, paper_plan, table.eval_ids(), top1.get)
    frame = table_frame(table, paper_plan, tmp_path)
    nor = frame[(frame["method"] == "nor_mae") & (frame["cnp"] == "paper") & (frame["lam"] == 5e-5)]
    verdicts = dict(zip(nor["eval"], nor["verdict"]))
    assert verdicts == {"finetune": "NoR-MAE ahead", "linprobe": "within noise", "knn": "within noise"}
    assert nor.set_index("eval").loc["finetune", "gain_ours"] == pytest.approx(7.2)
    assert list(frame[frame["method"] == "mae"]["over_init"]) == pytest.approx([65.0] * 3)  # per protocol
