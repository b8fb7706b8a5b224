"""normae.data.registry: the facts of every data set, checked against the loaders that build them."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from normae.data.registry import (
    ANALYSIS_SOURCES,
    CLASSIFICATION_DATASETS,
    CLASSIFICATION_SETS,
    DATASET_NAMES,
    DATASETS,
    GENERATED_PRETRAIN_SAMPLES,
    PRETRAIN_DATASETS,
    short_name,
)

SCHEMA = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "scale.schema.yaml"
# Sets whose loaders need no download: Fashion-MNIST (the session's copy), the rest are drawn or bundled.
OFFLINE_SETS = ("fashion_mnist", "fashion_mnist_subset5", "digits", "generated")


def test_importing_the_registry_and_the_spec_loads_no_torch_numpy_or_pil():
    code = (
        "import sys, normae.data.registry, normae.spec; "
        "print(sorted(name for name in ('torch', 'torchvision', 'numpy', 'PIL') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_vocabularies_and_roles():
    assert set(DATASETS) == set(DATASET_NAMES)
    assert PRETRAIN_DATASETS == ("fashion_mnist", "imagenet1k", "imagenet100", "generated")
    assert set(PRETRAIN_DATASETS) <= set(CLASSIFICATION_DATASETS) & set(ANALYSIS_SOURCES)
    assert DATASETS["sklearn_samples"].roles == {"analysis"}
    assert DATASETS["cifar10"].roles == {"classification"}
    assert DATASETS["generated"].roles == {"pretrain", "classification", "analysis"}
    assert list(CLASSIFICATION_SETS) == list(CLASSIFICATION_DATASETS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASETS["fashion_mnist"].img_size = 32


def test_run_id_short_names_are_stable():
    """Run ids name a run's data set by these: changing one renames every run of that set."""
    assert {name: short_name(name) for name in PRETRAIN_DATASETS} == {
        "fashion_mnist": "fmnist",
        "imagenet1k": "in1k",
        "imagenet100": "in100",
        "generated": "gen",
    }
    assert short_name("cifar10") == "cifar10" and short_name("not_a_set") == "not_a_set"


def test_every_trainable_set_has_its_facts():
    for name in CLASSIFICATION_DATASETS:
        facts = DATASETS[name]
        assert facts.num_classes and facts.img_size and facts.eval_crop_pct, name
        assert facts.train_images > 0 and facts.eval_images > 0, name
        assert facts.train_split_name and facts.eval_split_name and facts.source, name
        if facts.native_size is not None and name in PRETRAIN_DATASETS:
            assert facts.native_size == facts.img_size, name
    assert DATASETS["caltech101"].train_images == 30 * DATASETS["caltech101"].num_classes


def test_the_workflow_schema_lists_the_analysis_sources():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert tuple(schema["$defs"]["analysis_source"]["enum"]) == ANALYSIS_SOURCES


def test_the_command_line_offers_the_analysis_sources():
    from normae.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for command, option in (("cnp-stats", "--source"), ("pca", "--dataset")):
        action = next(action for action in commands[command]._actions if option in action.option_strings)
        assert tuple(action.choices) == ANALYSIS_SOURCES, command


@pytest.mark.parametrize("name", OFFLINE_SETS)
def test_registry_agrees_with_the_classification_loaders(name, fashion_mnist_root):
    from normae.data.classification import build_classification_dataset, targets_of

    facts = DATASETS[name]
    for split, count in (("train", facts.train_images), ("eval", facts.eval_images)):
        dataset = build_classification_dataset(name, fashion_mnist_root, split, transform=None)
        assert len(dataset) == count, (name, split)
        assert set(targets_of(dataset)) == set(range(facts.num_classes)), (name, split)
        assert dataset[0][0].size == (facts.native_size, facts.native_size), (name, split)


@pytest.mark.parametrize("name", ["fashion_mnist", "generated"])
def test_registry_agrees_with_the_pretraining_loader(name, fashion_mnist_root):
    from normae.data.pretrain import build_pretrain_dataset

    facts = DATASETS[name]
    dataset = build_pretrain_dataset(name, root=fashion_mnist_root)
    image, _ = dataset[0]
    assert image.shape == (3, facts.img_size, facts.img_size)
    assert len(dataset) == (GENERATED_PRETRAIN_SAMPLES if name == "generated" else facts.train_images)
