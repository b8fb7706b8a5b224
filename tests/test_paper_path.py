"""The paper scale's path, read without running it: the data map into every spec, the authors' code's
CNP only where their code runs, and a device-hour estimate that weighs attention's quadratic cost."""

import dataclasses

import pytest

from normae.errors import ConfigError
from normae.experiments.config import CONFIG_DIR, load_scale, rehearsed
from normae.experiments.data_map import folder_for, read_data_map, with_overrides
from normae.experiments.plan import expand, load_experiments
from normae.experiments.plan_report import pretrain_hours
from normae.spec import METHODS, PretrainSpec


def one_grid_table(**point) -> dict:
    grid = dict(model="vit_tiny", dataset="imagenet100", method="nor_mae", epochs=200, patch_size=16)
    grid.update(mask_ratio=0.75, lam=5e-5, **point)
    return {
        "X": {
            "file": "x",
            "title": "x",
            "measure": None,
            "sweep": None,
            "grids": [grid],
            "evaluate": [{"protocol": "finetune", "dataset": "cifar10"}],
            "cnp_modes": ["paper", "authors_code"],
        }
    }


def paper_scale_for_one_table():
    """The paper scale for one_grid_table's experiments: its per_table block names tables they do not have."""
    return dataclasses.replace(load_scale("paper"), per_table={})


def test_the_data_map_reaches_every_spec_and_imagenet100_reads_imagenet1k():
    data = with_overrides(read_data_map(CONFIG_DIR), ["imagenet1k=/datasets/in1k", "cifar10=/datasets/c10"])
    plan = expand(one_grid_table(), paper_scale_for_one_table(), reported=[], data=data)
    assert {spec.data_root for spec in plan.pretrain.values()} == {"/datasets/in1k"}
    assert {spec.data_root for spec in plan.evaluations.values()} == {"/datasets/c10"}
    assert folder_for(data, "fashion_mnist") is None  # unset: looked up where the loader looks
    with pytest.raises(ConfigError, match="read from the imagenet1k folder"):
        with_overrides(data, ["imagenet100=/x"])
    with pytest.raises(ConfigError, match="write NAME=FOLDER"):
        with_overrides(data, ["imagenet1k"])
    assert with_overrides(data, ["cifar10="])["cifar10"] is None  # NAME= unsets


def test_the_authors_code_cnp_runs_where_their_code_runs_and_is_marked_extrapolated_elsewhere():
    scale = paper_scale_for_one_table()
    doubled = expand(one_grid_table(patch_size=8), scale, reported=[])  # cnp_modes doubles the NoR-MAE row
    by_cnp = {row.terms["cnp"]: row for row in doubled.tables["X"].rows}
    assert by_cnp["paper"].status == "run" and by_cnp["authors_code"].status == "not_run"
    assert "28x28 grid" in by_cnp["authors_code"].reason and "14x14" in by_cnp["authors_code"].reason
    asked = expand(one_grid_table(patch_size=8, cnp="authors_code"), scale, reported=[])
    (row,) = asked.tables["X"].rows
    assert row.status == "run" and row.reason.startswith("extrapolated: ")
    on_grid = expand(one_grid_table(cnp="authors_code"), scale, reported=[])  # patch 16: 14x14
    assert on_grid.tables["X"].rows[0].reason is None


def test_the_estimate_grows_faster_than_the_token_count():
    scale = load_scale("paper")
    hours = {p: pretrain_hours(PretrainSpec(dataset="imagenet100", img_size=224, patch_size=p), scale) for p in (2, 16)}
    tokens = (16 / 2) ** 2
    assert hours[2] / hours[16] > 1.5 * tokens  # attention's N^2 term: linear scaling underestimated patch 2


def test_a_rehearsal_keeps_models_sizes_and_batches_and_cuts_the_rest():
    paper = load_scale("paper")
    cut = rehearsed(paper)
    plan = expand(load_experiments(), cut, data={"imagenet1k": "/generated"})
    spec = next(s for s in plan.pretrain.values() if s.dataset == "imagenet1k")
    assert (spec.img_size, spec.global_batch, spec.epochs, spec.train_samples) == (224, 4096, 1, 2)
    # the paper's three models; DMAE's ViT-Large teacher pre-trained by the plan (the paper reads a file)
    assert {s.model for s in plan.pretrain.values()} == {"vit_tiny", "vit_small", "vit_base", "vit_large"}
    assert {s.method for s in plan.pretrain.values() if s.model == "vit_large"} == {"mae"}
    assert "REHEARSAL" in cut.header and "REHEARSAL" not in (paper.header or "")
    # each method at its smallest pass: SupMAE's BatchNorm head 2 images, the others 1; the ids stay the paper's
    passes = {(s.method, s.batch_size) for s in plan.pretrain.values()}
    assert passes == {(m, 2 if m.startswith("sup_") else 1) for m in METHODS}
    assert "smallest forward pass" in cut.header


def test_a_field_a_spec_does_not_use_leaves_its_run_id_alone():
    """Ids of runs made before global_batch and the SupMAE / DMAE options existed still name them."""
    from normae.spec import FinetuneSpec

    assert PretrainSpec().run_id().endswith("-af4b603f") and FinetuneSpec().run_id().endswith("-5b310871")
    assert PretrainSpec(method="mae", sup_weight=0.5, alpha=0).digest() == PretrainSpec(method="mae").digest()
    assert PretrainSpec(method="sup_mae", sup_weight=0.5).digest() != PretrainSpec(method="sup_mae").digest()
    assert PretrainSpec(global_batch=64).digest() != PretrainSpec().digest()


def test_a_dmae_student_trains_after_its_planned_teacher():
    """At the tiny scale the plan pre-trains the teacher stand-in (MAE, larger) and the student reads it."""
    plan = expand(load_experiments(), load_scale("tiny"))
    students = [spec for spec in plan.pretrain.values() if spec.method in ("dmae", "nor_dmae")]
    assert {spec.method for spec in students} == {"dmae", "nor_dmae"}
    for student in students:
        teacher_id = student.teacher.split("/")[-2]
        teacher = plan.pretrain[teacher_id]
        assert (teacher.method, teacher.model, student.teacher_model) == ("mae", "vit_tiny", "vit_tiny")
        assert (teacher.dataset, teacher.patch_size, teacher.epochs) == (student.dataset, student.patch_size, 1)
