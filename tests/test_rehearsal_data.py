"""The rehearsal data (normae.datagen.rehearsal): written in the real on-disk formats and read by the real loaders."""

import hashlib
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image
from torchvision.datasets import cifar, flowers102

from normae.data.classification import build_classification_dataset, targets_of
from normae.data.pretrain import build_pretrain_dataset
from normae.data.registry import CLASSIFICATION_SETS, REHEARSAL_MANIFEST, read_class_file
from normae.datagen.rehearsal import CALTECH101_NAMED, write_rehearsal_data

DOWNSTREAM = ["cifar10", "cifar100", "flowers102", "pets", "dtd", "food101", "aircraft", "caltech101"]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """(root, folders): the data of seed 0, one training and one evaluation image per class."""
    root = tmp_path_factory.mktemp("rehearsal")
    return root, write_rehearsal_data(root, train_per_class=1, eval_per_class=1, seed=0)


def manifest(folder):
    return json.loads((folder / REHEARSAL_MANIFEST).read_text())


def spread(dataset, count=20):
    """About ``count`` indices spread over the dataset, its first and last included."""
    return sorted(set(range(0, len(dataset), max(1, len(dataset) // count))) | {len(dataset) - 1})


def assert_rgb_items(dataset, indices):
    for index in indices:
        image, label = dataset[index]
        assert isinstance(image, Image.Image) and image.mode == "RGB" and type(label) is int


def test_folders_and_manifests(rehearsal):
    root, folders = rehearsal
    assert set(folders) == {"imagenet1k", "imagenet100", *DOWNSTREAM, "ade20k"}
    assert folders["imagenet1k"] == folders["imagenet100"] == root / "imagenet"
    for name in ["imagenet1k", *DOWNSTREAM]:
        assert folders[name] == (root / "imagenet" if name == "imagenet1k" else root / "downstream" / name)
        facts = manifest(folders[name])
        assert set(facts) == {"dataset", "generated_by", "num_classes", "train_images", "eval_images"}
        assert facts["dataset"] == name and facts["generated_by"] == "normae.datagen.rehearsal"
        assert facts["num_classes"] == CLASSIFICATION_SETS[name].num_classes


@pytest.mark.parametrize("name", DOWNSTREAM)
def test_downstream_set_loads(rehearsal, name):
    folder = rehearsal[1][name]
    facts = manifest(folder)
    for split, count in (("train", facts["train_images"]), ("eval", facts["eval_images"])):
        dataset = build_classification_dataset(name, folder, split, transform=None)
        assert len(dataset) == count
        assert sorted(set(targets_of(dataset))) == list(range(facts["num_classes"]))
        assert_rgb_items(dataset, spread(dataset))


def test_split_sizes_follow_the_loaders_protocols(rehearsal):
    folders = rehearsal[1]
    sizes = {
        name: (manifest(folders[name])["train_images"], manifest(folders[name])["eval_images"]) for name in folders
    }
    assert sizes["flowers102"] == (2 * 102, 102)  # train + val, each one per class
    assert sizes["dtd"] == (2 * 47, 47)  # train1 + val1
    assert sizes["caltech101"] == (101 * 30, 101)  # 30 + 1 images per class
    assert sizes["imagenet1k"] == (1000, 1000)


def test_caltech101_grayscale_image_comes_out_rgb(rehearsal):
    folder = rehearsal[1]["caltech101"]
    gray = folder / "caltech101" / "101_ObjectCategories" / CALTECH101_NAMED[0] / "image_0001.jpg"
    assert Image.open(gray).mode == "L"
    splits = [build_classification_dataset("caltech101", folder, split, None) for split in ("train", "eval")]
    # The gray file is item 0 of the full set (first class, image 1), in one of the two splits.
    [(dataset, position)] = [(d, d.indices.index(0)) for d in splits if 0 in d.indices]
    image, label = dataset[position]
    assert image.mode == "RGB" and label == 0


def odd_files(samples):
    """Indices of the grayscale JPEGs, the CMYK JPEGs and the PNGs among ImageFolder samples."""
    found = {"gray": [], "cmyk": [], "png": []}
    for index, (path, _) in enumerate(samples):
        with Image.open(path) as image:
            kind = "png" if image.format == "PNG" else {"L": "gray", "CMYK": "cmyk"}.get(image.mode)
        assert path.endswith(".JPEG")
        if kind is not None:
            found[kind].append(index)
    return found


@pytest.mark.parametrize("name", ["imagenet1k", "imagenet100"])
def test_imagenet_loads_with_its_odd_files(rehearsal, name):
    folder = rehearsal[1][name]
    facts = manifest(folder)
    classes = CLASSIFICATION_SETS[name].num_classes
    for split, count in (("train", facts["train_images"]), ("eval", facts["eval_images"])):
        dataset = build_classification_dataset(name, folder, split, transform=None)
        assert len(dataset) == count * classes // facts["num_classes"]
        assert len(dataset.classes) == classes and sorted(set(dataset.targets)) == list(range(classes))
        if name == "imagenet100":
            assert dataset.classes == read_class_file()
        odd = odd_files(dataset.samples)
        assert all(odd.values()), odd  # each kind in each split, in the ImageNet-100 classes too
        assert_rgb_items(dataset, [index for indices in odd.values() for index in indices] + spread(dataset))


@pytest.mark.parametrize("name", ["imagenet1k", "imagenet100"])
def test_imagenet_pretrain_dataset(rehearsal, name):
    folder = rehearsal[1][name]
    dataset = build_pretrain_dataset(name, root=folder, img_size=224)
    assert len(dataset) == manifest(folder)["train_images"] * CLASSIFICATION_SETS[name].num_classes // 1000
    odd = odd_files(dataset.samples)
    for index in [indices[0] for indices in odd.values()] + [0, len(dataset) - 1]:
        image, _ = dataset[index]
        assert isinstance(image, torch.Tensor) and image.shape == (3, 224, 224)


class Downloaded(Exception):
    pass


def test_download_true_still_verifies_checksums(rehearsal, monkeypatch):
    """The miniature files cannot have the published MD5 sums: with download=True torchvision fetches the set."""

    def refuse(url, *args, **kwargs):
        raise Downloaded(url)

    for module in (cifar, flowers102):
        monkeypatch.setattr(module, "download_and_extract_archive", refuse)
    for name in ("cifar10", "cifar100", "flowers102"):
        folder = rehearsal[1][name]
        assert len(build_classification_dataset(name, folder, "eval", None)) == manifest(folder)["eval_images"]
        with pytest.raises(Downloaded):
            build_classification_dataset(name, folder, "eval", None, download=True)


def tree_digest(root):
    """Every file under root (its path relative to root) -> the SHA-256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow  # keeps make test-fast under 3 minutes
def test_same_seed_same_bytes(rehearsal, tmp_path):
    root, _ = rehearsal
    write_rehearsal_data(tmp_path, train_per_class=1, eval_per_class=1, seed=0)
    first, second = tree_digest(root), tree_digest(tmp_path)
    assert len(first) > 5000 and first == second


def test_generator_imports_no_torch():
    code = "import sys, normae.datagen.rehearsal; print(sorted({'torch', 'torchvision', 'timm'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def rehearsal_cli(capsys, *args):
    """Run ``normae rehearsal-data`` in this process: (exit status, stderr)."""
    from normae.cli import main

    status = main(["rehearsal-data", *args])
    return status, capsys.readouterr().err


def test_non_empty_out_and_existing_config_out_are_refused(tmp_path, capsys):
    """n52: the user's files in --out and their config file are neither mixed with nor overwritten by
    generated ones unless --overwrite says so; nothing is written on a refusal."""
    out = tmp_path / "data"
    mine = out / "imagenet" / "train" / "n01440764" / "n01440764_7970.JPEG"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's own picture")
    status, err = rehearsal_cli(capsys, "--out", str(out), "--train-per-class", "1")
    assert status == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and "is not empty" in err and "--overwrite" in err
    assert mine.read_bytes() == b"the user's own picture" and len(list(out.rglob("*.JPEG"))) == 1

    config = tmp_path / "config.yaml"
    config.write_text("mine: true\n")
    status, err = rehearsal_cli(capsys, "--out", str(tmp_path / "new"), "--config-out", str(config))
    assert status == 2 and err.count("\n") == 1 and "--config-out" in err and "--overwrite" in err
    assert config.read_text() == "mine: true\n" and not (tmp_path / "new").exists()


def test_overwrite_writes_into_a_non_empty_out(tmp_path, monkeypatch):
    from normae.datagen import rehearsal

    (tmp_path / "keep.txt").write_text("kept")
    monkeypatch.setattr(rehearsal, "_DOWNSTREAM", {})  # ImageNet only: the refusal is what is tested
    monkeypatch.setattr(rehearsal, "imagenet_wnids", lambda: ["n01440764", "n01443537", "n01484850"])
    monkeypatch.setattr(rehearsal, "read_class_file", lambda: [f"n0{i}" for i in range(7)])
    with pytest.raises(rehearsal.ConfigError, match="not empty"):
        rehearsal.write_rehearsal_data(tmp_path, train_per_class=1, eval_per_class=1)
    folders = rehearsal.write_rehearsal_data(tmp_path, train_per_class=1, eval_per_class=1, overwrite=True)
    assert (folders["imagenet1k"] / REHEARSAL_MANIFEST).is_file() and (tmp_path / "keep.txt").read_text() == "kept"


@pytest.mark.parametrize(
    "args, named",
    [
        (["--out", "{file}"], "is a file"),  # n55
        (["--out", "{new}", "--train-per-class", "0"], "--train-per-class must be at least 1"),  # n56
        (["--out", "{new}", "--eval-per-class", "-1"], "--eval-per-class must be at least 1"),
    ],
)
def test_bad_out_or_count_is_one_line(tmp_path, capsys, args, named):
    (tmp_path / "file").write_text("x")
    paths = {"file": str(tmp_path / "file"), "new": str(tmp_path / "new")}
    status, err = rehearsal_cli(capsys, *[arg.format(**paths) for arg in args])
    assert status == 2 and "Traceback" not in err and err.count("\n") == 1 and named in err, err
    assert not (tmp_path / "new").exists()
