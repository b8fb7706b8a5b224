import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from normae.experiments import plan
from normae.spec import PretrainSpec

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"


def expand(scale="paper", experiments=CONFIG / "experiments.yaml"):
    return plan.expand(plan.load_experiments(experiments), plan.load_scale(scale))


@pytest.fixture(scope="module")
def paper_plan():
    return expand("paper")


@pytest.fixture(scope="module")
def tiny_plan():
    return expand("tiny")


def test_shared_run_is_trained_once_and_used_by_tables_1_3_5_7(paper_plan):
    shared = [run_id for run_id, spec in paper_plan.pretrain.items()
              if (spec.model, spec.dataset, spec.method, spec.lam, spec.mask_ratio, spec.patch_size,
                  spec.epochs, spec.cnp, spec.nor_variant)
              == ("vit_tiny", "imagenet100", "nor_mae", 5e-5, 0.75, 16, 200, "paper", "offdiag")]
    assert len(shared) == 1
    users = {name for name, table in paper_plan.tables.items() if shared[0] in table.pretrain_ids()}
    assert {"T1", "T3", "T5", "T7"} <= users


def test_every_reported_row_is_in_a_table(paper_plan):
    for reported in plan.read_reported(CONFIG / "reported.csv"):
        rows = [row for row in paper_plan.tables[reported["table"]].rows
                if row.paper_value == float(reported["value"]) and row.metric == reported["metric"]
                and (row.terms["model"], row.terms["method"]) == (reported["model"], reported["method"])]
        assert rows, f"reported row dropped: {reported}"
        for row in rows:
            assert row.pretrain_ids or row.reason, row
            if reported["ran_by_paper"] == "no":
                assert row.status == "cited"


def test_reported_csv_is_the_papers_copy():
    """The project's copy of the paper's numbers must not drift from shared/, where a checkout has it beside it."""
    shared = ROOT.parent / "shared/paper/reported.csv"
    if not shared.exists():
        pytest.skip(f"{shared} is not beside this checkout: nothing to compare the copy with")
    assert (CONFIG / "reported.csv").read_text() == shared.read_text()


def test_not_implemented_methods_are_listed(paper_plan):
    rows = [row for table in paper_plan.tables.values() for row in table.rows if row.status == "not_implemented"]
    blockers = {row.terms["method"] for row in rows} | {row.terms["eval"] for row in rows}
    assert {"sup_mae", "sup_nor_mae", "nor_dmae", "segmentation"} <= blockers
    assert all(row.reason for row in rows)


def test_tiny_scale_maps_to_fashion_mnist_and_small_models(tiny_plan):
    assert tiny_plan.pretrain
    for spec in tiny_plan.pretrain.values():
        assert spec.dataset == "fashion_mnist"
        assert spec.model in ("vit_micro", "vit_mini")
        assert spec.img_size == 28
        assert PretrainSpec.from_dict(spec.to_dict()).digest() == spec.digest()  # validates
    for spec in tiny_plan.evaluations.values():
        assert spec.dataset in ("fashion_mnist", "digits", "fashion_mnist_subset5", "generated")
        assert Path(spec.init).parent.name in tiny_plan.pretrain


def test_tiny_not_run_rows_say_why(tiny_plan):
    not_run = [row for row in tiny_plan.tables["T4"].rows if row.status == "not_run"]
    assert {row.terms["eval_dataset"] for row in not_run} == {"cifar100", "dtd", "food101", "caltech101", "aircraft", "pets"}
    assert all(row.reason for row in not_run)
    assert any("not run" in line for line in tiny_plan.tables["T1"].mapping)


def test_stand_ins_agree_with_downstream():
    from normae.data.classification import CLASSIFICATION_SETS

    scale = plan.load_scale("tiny")
    for name, info in CLASSIFICATION_SETS.items():
        if info.stand_in_for:
            mapped, reason = scale.map("datasets", info.stand_in_for)
            assert mapped == name or reason, name


def test_ids_are_stable_and_unique_per_digest(paper_plan):
    again = expand("paper")
    assert list(again.pretrain) == list(paper_plan.pretrain)
    assert list(again.evaluations) == list(paper_plan.evaluations)
    for specs in (paper_plan.pretrain, paper_plan.evaluations):
        assert len({spec.digest() for spec in specs.values()}) == len(specs)
        assert all(spec.run_id() == run_id for run_id, spec in specs.items())


def test_evaluations_point_at_their_pretraining_run(paper_plan):
    for table in paper_plan.tables.values():
        for row in table.rows:
            if row.status != "run":
                continue
            for pretrain_id, eval_id in zip(row.pretrain_ids, row.eval_ids, strict=True):
                evaluation = paper_plan.evaluations[eval_id]
                assert evaluation.init == f"results/runs/{pretrain_id}/checkpoint.pt"
                assert pretrain_id in eval_id


def test_each_seed_is_its_own_pair_of_runs():
    seeded = plan.expand(plan.load_experiments(CONFIG / "experiments.yaml"), plan.load_scale("tiny"), seeds=[0, 1])
    single = expand("tiny")
    assert len(seeded.pretrain) == 2 * len(single.pretrain)
    assert len(seeded.evaluations) == 2 * len(single.evaluations)
    row = next(row for row in seeded.tables["T5"].rows if row.status == "run")
    assert [seeded.pretrain[i].seed for i in row.pretrain_ids] == [0, 1]
    assert [seeded.evaluations[i].seed for i in row.eval_ids] == [0, 1]
    with pytest.raises(ValueError, match="distinct"):
        plan.expand(plan.load_experiments(CONFIG / "experiments.yaml"), plan.load_scale("tiny"), seeds=[0, 0])


def test_ablation_has_five_distinct_variants(paper_plan):
    rows = paper_plan.tables["ablation"].rows
    variants = {(row.terms["method"], row.terms.get("cnp"), row.terms.get("nor_variant")) for row in rows}
    assert variants == {("mae", None, None), ("nor_mae", "paper", "offdiag"), ("nor_mae", "authors_code", "offdiag"),
                        ("nor_mae", "random", "offdiag"), ("nor_mae", "paper", "diag")}
    assert len({run_id for row in rows for run_id in row.pretrain_ids}) == 5


def test_cnp_modes_double_the_nor_mae_rows(tmp_path):
    experiments = yaml.safe_load((CONFIG / "experiments.yaml").read_text())
    t7 = experiments["tables"]["T7"]
    counts = {}
    for modes in (["paper"], ["paper", "authors_code"]):
        t7["cnp_modes"] = modes
        path = tmp_path / "experiments.yaml"
        path.write_text(yaml.safe_dump(experiments))
        rows = expand("paper", path).tables["T7"].rows
        counts[len(modes)] = sum(row.terms["method"] == "nor_mae" for row in rows)
    assert counts[2] == 2 * counts[1] == 6


def test_plan_does_not_import_torch():
    subprocess.run([sys.executable, "-c", "import normae.experiments.plan, sys; assert 'torch' not in sys.modules"],
                   cwd=ROOT, check=True)


def test_wrong_key_in_experiments_is_named(tmp_path):
    experiments = yaml.safe_load((CONFIG / "experiments.yaml").read_text())
    experiments["tables"]["T1"]["pretrain"]["patchsize"] = 16
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump(experiments))
    with pytest.raises(ValueError, match="patchsize"):
        plan.load_experiments(path)


def test_wrong_key_in_scale_is_named(tmp_path):
    (tmp_path / "scales").mkdir()
    scale = yaml.safe_load((CONFIG / "scales" / "tiny.yaml").read_text())
    scale["pretrain"]["batchsize"] = 8
    (tmp_path / "scales" / "broken.yaml").write_text(yaml.safe_dump(scale))
    with pytest.raises(ValueError, match="batchsize"):
        plan.load_scale("broken", tmp_path)


def test_main_prints_every_table(capsys):
    assert plan.main(["--scale", "paper"]) == 0
    out = capsys.readouterr().out
    for name in ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "F3", "F6", "F7", "F8", "SUPP", "ablation"):
        assert f"\n{name}: " in out
    assert "not implemented" in out and "estimate" in out
