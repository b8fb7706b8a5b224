import json
import subprocess
import sys
import types
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml

from normae.cluster.resources import SLURM_GROUPS
from normae.errors import ConfigError
from normae.experiments import config, plan
from normae.spec import (
    DISTILLED_METHODS,
    NOR_VARIANTS,
    STAGES,
    FinetuneSpec,
    KnnSpec,
    LinprobeSpec,
    PretrainSpec,
    SegmentSpec,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"


def expand(scale="paper", experiments=CONFIG / "experiments.yaml"):
    return plan.expand(plan.load_experiments(experiments), plan.load_scale(scale))


@pytest.fixture(scope="module")
def paper_plan():
    return expand("paper")


def test_shared_run_is_trained_once_and_used_by_tables_1_3_5_7(paper_plan):
    shared = [
        run_id
        for run_id, spec in paper_plan.pretrain.items()
        if (
            spec.model,
            spec.dataset,
            spec.method,
            spec.lam,
            spec.mask_ratio,
            spec.patch_size,
            spec.epochs,
            spec.cnp,
            spec.nor_variant,
            spec.seed,
        )
        == ("vit_tiny", "imagenet100", "nor_mae", 5e-5, 0.75, 16, 200, "paper", "offdiag", 0)
    ]
    assert len(shared) == 1
    users = {name for name, table in paper_plan.tables.items() if shared[0] in table.pretrain_ids()}
    assert {"T1", "T3", "T5", "T7"} <= users


def test_every_reported_row_is_in_a_table(paper_plan):
    for reported in plan.read_reported(CONFIG / "reported.csv"):
        rows = [
            row
            for row in paper_plan.tables[reported["table"]].rows
            if row.paper_value == float(reported["value"])
            and row.metric == reported["metric"]
            and (row.terms["model"], row.terms["method"]) == (reported["model"], reported["method"])
        ]
        assert rows, f"reported row dropped: {reported}"
        for row in rows:
            assert row.pretrain_ids or row.reason, row
            if reported["ran_by_paper"] == "no":  # a number the paper cites: we run DMAE's ViT-Base row beside it
                grid = (row.terms["model"], row.terms["method"]) == ("vit_base", "dmae")
                assert row.status in (("run", "not_run") if grid else ("cited",)), row


def test_reported_csv_is_the_papers_copy():
    """The project's copy of the paper's numbers must not drift from shared/, where a checkout has it beside it."""
    shared = ROOT.parent / "shared/paper/reported.csv"
    if not shared.exists():
        pytest.skip(f"{shared} is not beside this checkout: nothing to compare the copy with")
    assert (CONFIG / "reported.csv").read_text() == shared.read_text()


def test_every_paper_row_is_implemented(paper_plan):
    rows = [row for table in paper_plan.tables.values() for row in table.rows]
    assert not [row for row in rows if row.status == "not_implemented"]
    t2 = {row.terms["method"]: row for row in paper_plan.tables["T2"].rows if row.terms["model"] == "vit_base"}
    assert t2["sup_nor_mae"].status == "run" and "teacher.checkpoint" in t2["nor_dmae"].reason
    # Table 4's four ADE20K rows are runs: UperNet on ADE20K from each pre-training
    ade = [row for row in paper_plan.tables["T4"].rows if row.terms["eval_dataset"] == "ade20k"]
    assert len(ade) == 4 and all(row.status == "run" for row in ade)
    for row in ade:
        spec = paper_plan.evaluations[row.eval_ids[0]]
        assert (spec.stage, spec.dataset, spec.global_batch, spec.epochs) == ("segment", "ade20k", 16, 100)
        assert spec.init == f"results/runs/{row.pretrain_ids[0]}/checkpoint.pt"
        assert paper_plan.pretrain[row.pretrain_ids[0]].model == row.terms["model"]


def test_tiny_scale_maps_to_fashion_mnist_and_small_models(tiny_plan):
    assert tiny_plan.pretrain
    for spec in tiny_plan.pretrain.values():
        assert spec.dataset == "fashion_mnist"
        assert spec.model in ("vit_micro", "vit_mini") or spec.model == tiny_plan_teacher_model()
        assert spec.img_size == 28
        assert PretrainSpec.from_dict(spec.to_dict()).digest() == spec.digest()  # validates
    for spec in tiny_plan.evaluations.values():
        assert spec.dataset in ("fashion_mnist", "digits", "fashion_mnist_subset5", "generated", "fashion_mnist_canvas")
        assert spec.init == "none" or Path(spec.init).parent.name in tiny_plan.pretrain


def test_tiny_not_run_rows_say_why(tiny_plan):
    not_run = [row for row in tiny_plan.tables["T4"].rows if row.status == "not_run"]
    assert {row.terms["eval_dataset"] for row in not_run} == {
        "cifar100",
        "dtd",
        "food101",
        "caltech101",
        "aircraft",
        "pets",
    }
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
            if row.status != "run" or row.terms["method"] == config.NO_PRETRAINING:
                continue
            for pretrain_id, eval_id in zip(row.pretrain_ids, row.eval_ids, strict=True):
                evaluation = paper_plan.evaluations[eval_id]
                assert evaluation.init == f"results/runs/{pretrain_id}/checkpoint.pt"
                assert pretrain_id in eval_id


def test_each_seed_is_its_own_pair_of_runs():
    seeded = plan.expand(plan.load_experiments(CONFIG / "experiments.yaml"), plan.load_scale("tiny"), seeds=[0, 1])
    single = expand("tiny")
    teachers = {spec.teacher for spec in single.pretrain.values() if spec.teacher}  # one teacher for every seed
    assert len(seeded.pretrain) == 2 * len(single.pretrain) - len(teachers)
    assert len(seeded.evaluations) == 2 * len(single.evaluations)
    row = next(row for row in seeded.tables["T5"].rows if row.status == "run")
    assert [seeded.pretrain[i].seed for i in row.pretrain_ids] == [0, 1]
    assert [seeded.evaluations[i].seed for i in row.eval_ids] == [0, 1]
    with pytest.raises(ValueError, match="distinct"):
        plan.expand(plan.load_experiments(CONFIG / "experiments.yaml"), plan.load_scale("tiny"), seeds=[0, 0])


def test_ablation_has_five_distinct_variants(paper_plan):
    rows = paper_plan.tables["ablation"].rows
    variants = {(row.terms["method"], row.terms.get("cnp"), row.terms.get("nor_variant")) for row in rows}
    assert variants == {
        ("mae", None, None),
        ("nor_mae", "paper", "offdiag"),
        ("nor_mae", "authors_code", "offdiag"),
        ("nor_mae", "random", "offdiag"),
        ("nor_mae", "paper", "diag"),
    }
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


@pytest.mark.parametrize("scale", ["tiny", "gpu", "paper"])
def test_a_knn_protocol_plans_knn_runs_beside_finetuning(tmp_path, scale):
    experiments = yaml.safe_load((CONFIG / "experiments.yaml").read_text())
    t5 = experiments["tables"]["T5"]
    t5["evaluate"] = [*config.as_list(t5["evaluate"]), {"protocol": "knn", "dataset": "imagenet1k"}]
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump(experiments))
    planned = expand(scale, path)
    rows = [row for row in planned.tables["T5"].rows if row.terms["eval"] == "knn" and row.status == "run"]
    assert rows
    settings = plan.load_scale(scale).knn
    for row in rows:
        for pretrain_id, eval_id in zip(row.pretrain_ids, row.eval_ids, strict=True):
            spec = planned.evaluations[eval_id]
            assert isinstance(spec, KnnSpec) and (spec.k, spec.temperature) == (20, 0.07)
            assert spec.init == f"results/runs/{pretrain_id}/checkpoint.pt"
            assert spec.model == planned.pretrain[pretrain_id].model
            assert {key: getattr(spec, key) for key in settings} == settings
    # The fine-tuning rows and their runs are the same as without the knn rows.
    assert planned.tables["T5"].pretrain_ids() == expand(scale).tables["T5"].pretrain_ids()


def test_every_stage_has_a_slurm_group_the_config_schema_knows():
    """The workflow (common.smk) imports SLURM_GROUPS; each group must be a key its config accepts."""
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert set(SLURM_GROUPS) == set(STAGES) and SLURM_GROUPS["knn"] == SLURM_GROUPS["bench"] == "evaluate"
    assert set(SLURM_GROUPS.values()) == set(schema["properties"]["slurm"]["properties"])


def test_plan_does_not_import_torch():
    subprocess.run(
        [sys.executable, "-c", "import normae.experiments.plan, sys; assert 'torch' not in sys.modules"],
        cwd=ROOT,
        check=True,
    )


def test_config_and_schema_folders_are_the_checkouts():
    assert config.CONFIG_DIR == CONFIG
    assert config.SCHEMA_DIR == ROOT / "workflow" / "schemas"


@pytest.mark.parametrize("schema", ["config.schema.yaml", "experiments.schema.yaml", "scale.schema.yaml"])
def test_schemas_are_valid_draft_2020_12(schema):
    jsonschema.Draft202012Validator.check_schema(yaml.safe_load((config.SCHEMA_DIR / schema).read_text()))


@pytest.mark.parametrize("scale", sorted(p.stem for p in (CONFIG / "scales").glob("*.yaml")))
def test_shipped_scales_validate(scale):
    assert plan.load_scale(scale).name == scale


def test_shipped_experiments_validate():
    assert "T1" in plan.load_experiments(CONFIG / "experiments.yaml")


def _set(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[int(key) if isinstance(data, list) else key]
    if value is DELETE:
        del data[last]
    else:
        data[last] = value


DELETE = object()


@pytest.mark.parametrize(
    "dotted, value, named",
    [
        (
            "tables.T1.pretrain.patchsize",
            16,
            "tables.T1.pretrain.patchsize: Additional properties are not allowed ('patchsize' was unexpected)",
        ),
        ("tables.T1.pretrain.patch_size", "16", "tables.T1.pretrain.patch_size: '16' is not of type 'integer'"),
        ("tables.T5.pretrain.lam", ["1e-5"], "tables.T5.pretrain.lam.0: '1e-5' is not of type 'number' (YAML 1.1"),
        ("tables.T1.cnp_modes", ["paper", "authorscode"], "tables.T1.cnp_modes.1: 'authorscode' is not one of"),
        ("tables.T4.evaluate.1.protocol", "segment", "tables.T4.evaluate.1.protocol: 'segment' is not one of"),
        ("tables.T2.variants.1.method", "nor_dmea", "tables.T2.variants.1.method: 'nor_dmea' is not one of"),
        ("tables.F3.pretrain", {"model": "vit_tiny"}, "tables.F3.pretrain: 'pretrain' is not allowed here"),
        ("tables.T3.evaluate", DELETE, "tables.T3: 'evaluate' is a required property"),
        ("defaults.pretrain.model", DELETE, "tables.T1: no value for the pretrain term(s) model"),
    ],
)
def test_bad_entry_in_experiments_names_file_and_key(tmp_path, monkeypatch, dotted, value, named):
    experiments = yaml.safe_load((CONFIG / "experiments.yaml").read_text())
    _set(experiments, dotted, value)
    (tmp_path / "experiments.yaml").write_text(yaml.safe_dump(experiments, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as raised:
        plan.load_experiments("experiments.yaml")
    assert isinstance(raised.value, ValueError)
    assert str(raised.value).startswith(f"experiments.yaml: {named}")


@pytest.mark.parametrize(
    "dotted, value, named",
    [
        (
            "pretrain.bogus_key",
            1,
            "pretrain.bogus_key: Additional properties are not allowed ('bogus_key' was unexpected)",
        ),
        ("pretrain.seed", 1, "pretrain.seed: Additional properties are not allowed"),  # the plan's seeds decide it
        ("finetune.batch_size", "64", "finetune.batch_size: '64' is not of type 'integer'"),
        ("linprobe.blr", "1e-3", "linprobe.blr: '1e-3' is not of type 'number'"),
        ("cnp_modes", ["paper", "rand"], "cnp_modes.1: 'rand' is not one of ['paper', 'authors_code', 'random']"),
        ("finetune.amp", "fp32", "finetune.amp: 'fp32' is not one of"),
        ("datasets.pets", {"not_runn": "typo"}, "datasets.pets.not_runn: Additional properties are not allowed"),
        ("datasets.pets", None, "datasets.pets: None is not of type 'string'"),
        ("patch_sizes.16", "4", "patch_sizes.16: '4' is not of type 'integer'"),
        (
            "analysis.cnp_similarity.fashion_mnist.pixels",
            "norm",
            "analysis.cnp_similarity.fashion_mnist.pixels: 'norm' is not one of",
        ),
        (
            "analysis.cnp_similarity.mnist",
            {"images": 8, "img_size": 28, "patch_size": 4},
            "analysis.cnp_similarity.mnist: 'mnist' is not allowed here",
        ),
        ("throughput.finetune", DELETE, "throughput: 'finetune' is a required property"),
    ],
)
def test_bad_entry_in_scale_names_file_and_key(tmp_path, monkeypatch, dotted, value, named):
    (tmp_path / "scales").mkdir()
    scale = yaml.safe_load((CONFIG / "scales" / "tiny.yaml").read_text())
    if dotted.startswith("patch_sizes."):
        scale["patch_sizes"][int(dotted.split(".")[1])] = value
    else:
        _set(scale, dotted, value)
    (tmp_path / "scales" / "broken.yaml").write_text(yaml.safe_dump(scale))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as raised:
        plan.load_scale("broken", ".")
    assert isinstance(raised.value, ValueError)
    assert str(raised.value).startswith(f"{Path('scales/broken.yaml')}: {named}")


def _schema(name: str) -> dict:
    return yaml.safe_load((config.SCHEMA_DIR / name).read_text())


def test_schema_vocabularies_are_the_python_constants():
    from normae.data.analysis_images import SOURCES
    from normae.experiments.config import SWEEP_TERMS as SWEEP_AXES

    experiments, scale = _schema("experiments.schema.yaml"), _schema("scale.schema.yaml")
    assert experiments["$defs"]["method"]["enum"] == list(config.METHODS)
    assert experiments["$defs"]["cnp_mode"]["enum"] == list(config.CNP_MODES)
    assert experiments["$defs"]["nor_variant"]["enum"] == list(NOR_VARIANTS)
    assert experiments["$defs"]["protocol"]["enum"] == list(config.PROTOCOLS)
    assert experiments["$defs"]["measure"]["enum"] == list(config.MEASUREMENTS)
    assert experiments["$defs"]["sweep"]["enum"] == list(SWEEP_AXES)
    grid_options = [config.SEED_COUNT, config.GRID_EVALUATE]
    assert list(experiments["$defs"]["grid"]["properties"]) == [*config.PRETRAIN_TERMS, *grid_options]
    assert scale["$defs"]["protocol"]["enum"] == list(config.PROTOCOLS)
    assert scale["$defs"]["cnp_mode"]["enum"] == list(config.CNP_MODES)
    assert scale["$defs"]["analysis_source"]["enum"] == list(SOURCES)


def test_python_vocabularies_agree_with_each_other_and_the_spec():
    not_implemented_protocols = set(config.NOT_IMPLEMENTED) - set(config.METHODS)
    assert set(config.PROTOCOLS) == {*config.EVAL_SPECS, *config.ANALYSES, *not_implemented_protocols}
    assert set(config.NOT_IMPLEMENTED) <= {*config.METHODS, *config.PROTOCOLS}
    assert set(config.METHODS_WITHOUT_NOR_LOSS) <= set(config.METHODS)
    assert set(config.REQUIRED_PRETRAIN_TERMS) <= set(config.PRETRAIN_TERMS)
    for method in config.METHODS:  # the spec trains exactly the methods that are implemented
        if method in config.NOT_IMPLEMENTED or method == config.NO_PRETRAINING:
            with pytest.raises(ValueError, match="method"):
                PretrainSpec(method=method)
        else:
            PretrainSpec(method=method, teacher="mae.pth" if method in DISTILLED_METHODS else None)
    for cnp in config.CNP_MODES:
        PretrainSpec(cnp=cnp)
    for variant in NOR_VARIANTS:
        PretrainSpec(nor_variant=variant)


JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}


def _json_types(hint) -> set[str]:
    if typing.get_origin(hint) is typing.Literal:
        return {JSON_TYPES[type(value)] for value in typing.get_args(hint)}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return set().union(*(_json_types(arg) for arg in typing.get_args(hint)))
    return {JSON_TYPES[hint]}


@pytest.mark.parametrize(
    "block, spec_class",
    [
        ("pretrain", PretrainSpec),
        ("finetune", FinetuneSpec),
        ("linprobe", LinprobeSpec),
        ("knn", KnnSpec),
        ("segmentation", SegmentSpec),
    ],
)
def test_scale_schema_lists_the_spec_fields_a_scale_may_set(block, spec_class):
    """The scale schema lists each block's keys and types by hand: they must be the spec's settable fields."""
    schema = _schema("scale.schema.yaml")
    properties = schema["properties"][block]["properties"]
    assert set(properties) == config.scale_spec_fields(spec_class)
    hints = typing.get_type_hints(spec_class)
    for name, prop in properties.items():
        if "$ref" in prop:
            prop = schema["$defs"][prop["$ref"].rsplit("/", 1)[1]]
        declared = prop.get("type", [JSON_TYPES[type(value)] for value in prop.get("enum", [])])
        if "oneOf" in prop:  # a value per paper data set besides the spec's own type (pretrain.global_batch)
            declared = [option["type"] for option in prop["oneOf"] if option["type"] != "object"]
        assert set([declared] if isinstance(declared, str) else declared) == _json_types(hints[name]), name
        if typing.get_origin(hints[name]) is typing.Literal:
            assert prop["enum"] == list(typing.get_args(hints[name])), name


def test_normae_plan_prints_every_table(capsys):
    from normae.cli import main

    assert main(["plan", "--scale", "paper"]) == 0
    out = capsys.readouterr().out
    for name in ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "F3", "F6", "F7", "F8", "SUPP", "ablation"):
        assert f"\n{name}: " in out
    assert "not implemented" not in out and "estimate" in out


def test_plan_ids_of_one_table_are_exactly_its_runs(capsys, tiny_plan):
    from normae.cli import main

    assert main(["plan", "--scale", "tiny", "--table", "table5", "--ids"]) == 0
    printed = capsys.readouterr().out.split()
    table = tiny_plan.tables["T5"]
    assert sorted(printed) == sorted(table.pretrain_ids() | table.eval_ids())


def test_plan_json_gives_every_run_its_spec_and_the_rows_it_serves(capsys, tiny_plan):
    from normae.cli import main

    assert main(["plan", "--scale", "tiny", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    runs = {run["run_id"]: run for run in document["runs"]}
    assert set(runs) == set(tiny_plan.pretrain) | set(tiny_plan.evaluations) | set(tiny_plan.measurements)
    assert [run["stage"] for run in runs.values()].count("bench") == 1  # the cost claim, a run like any other
    for run_id, run in runs.items():
        assert run["spec"] == tiny_plan.spec(run_id).to_dict() and run["stage"] == tiny_plan.spec(run_id).stage
        assert run["serves"], f"{run_id} serves no table row"
    t5 = [s for run in runs.values() for s in run["serves"] if s["table"] == "T5"]
    assert {s["terms"]["lam"] for s in t5 if s["terms"]["method"] == "nor_mae"} == {1e-5, 5e-5, 1e-4, 5e-4}
    # the paper scale's batches (Sec. 4; MAE's fine-tuning and probing), each with the lr it gives
    assert main(["plan", "--scale", "paper", "--json", "--data", "imagenet1k=/datasets/in1k"]) == 0
    paper = json.loads(capsys.readouterr().out)
    batches = {(r["stage"], r["spec"]["dataset"], r["spec"].get("global_batch")) for r in paper["runs"]}
    assert ("pretrain", "imagenet1k", 4096) in batches and ("pretrain", "imagenet100", 2048) in batches
    assert {b for stage, _, b in batches if stage == "finetune"} == {512}
    assert all(r["spec"]["data_root"] == "/datasets/in1k" for r in paper["runs"] if r["stage"] == "pretrain")
    in1k = next(r for r in paper["runs"] if r["stage"] == "pretrain" and r["spec"]["dataset"] == "imagenet1k")
    assert in1k["learning_rate"]["lr"] == pytest.approx(1.5e-4 * 4096 / 256) and "-b4096-" in in1k["run_id"]
    assert main(["plan", "--table", "T99"]) == 2
    assert "no table T99" in capsys.readouterr().err


def test_the_config_schema_names_the_data_map_keys_of_the_registry():
    from normae.data.registry import FOLDER_DATASETS

    keys = _schema("config.schema.yaml")["properties"]["data"]["propertyNames"]["enum"]
    assert tuple(keys) == FOLDER_DATASETS
    assert set(yaml.safe_load((CONFIG / "config.yaml").read_text())["data"]) == set(FOLDER_DATASETS)


def tiny_plan_teacher_model() -> str:
    """The tiny scale's DMAE teacher stand-in (a larger model than its students)."""
    return config.load_scale("tiny").teacher["model"]


def test_a_lam_scale_key_no_row_uses_is_refused_naming_the_nearest():
    """n67: ``vit_tiny/16/mr0.50`` for ``mr0.5`` passed the schema and its rows ran the unqualified factor."""
    scale = plan.load_scale("gpu")
    experiments = plan.load_experiments(CONFIG / "experiments.yaml")
    scale.lam_scale = {
        ("vit_tiny/16/mr0.50" if key == "vit_tiny/16/mr0.5" else key): f for key, f in scale.lam_scale.items()
    }
    with pytest.raises(
        ConfigError, match=r"lam_scale key 'vit_tiny/16/mr0.50'.*did you mean 'vit_tiny/16/mr0.5'"
    ) as error:
        plan.expand(experiments, scale)
    assert "\n" not in str(error.value)


def test_two_tables_writing_one_file_are_refused_naming_both():
    """n72: two tables with file: table1 were accepted and the later one's table replaced the other's."""
    experiments = plan.load_experiments(CONFIG / "experiments.yaml")
    first, second = list(experiments)[:2]
    experiments[second]["file"] = experiments[first]["file"]
    with pytest.raises(ConfigError, match=f"tables {first} and {second} both have file: {experiments[first]['file']}"):
        plan.expand(experiments, plan.load_scale("tiny"))
