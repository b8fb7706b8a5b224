"""normae.datacheck.check: miniature copies in each set's real layout, right and broken, and what check_dataset says."""

import importlib.util
import io
import json
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from normae.data.layouts import ON_DISK
from normae.data.registry import DATASETS, LAYOUTS, REHEARSAL_MANIFEST, folder_key
from normae.datacheck.check import check_dataset, distinct_problems
from normae.datagen.rehearsal import write_rehearsal_set
from normae.errors import ConfigError
from normae.experiments.data_map import CONFIG_FILE, folder_for, normalised, read_data_map, with_overrides

from helpers import write_fashion_mnist

REPO = Path(__file__).resolve().parents[1]


def _jpeg(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (value, 255 - value, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = _jpeg(90)
GARBAGE = b"<html>an error page saved as .JPEG</html>"
TRUNCATED = JPEG[: len(JPEG) // 2]


def put(path: Path, data: bytes = JPEG) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_manifest(folder: Path, dataset: str, train: int, evaluate: int, num_classes=None) -> None:
    num_classes = DATASETS[dataset].num_classes if num_classes is None else num_classes
    manifest = {"dataset": dataset, "generated_by": "tests", "num_classes": num_classes}
    (folder / REHEARSAL_MANIFEST).write_text(json.dumps({**manifest, "train_images": train, "eval_images": evaluate}))


def timm_wnids() -> list[str]:
    """The 1000 ImageNet-1K wnids from timm's installed synset list, as the checker reads them."""
    origin = Path(importlib.util.find_spec("timm").origin)
    wnids = [line.strip() for line in (origin.parent / "data" / "_info" / "imagenet_synsets.txt").read_text().split()]
    assert len(set(wnids)) == 1000
    return sorted(wnids)


def imagenet100_wnids() -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "normae" / "resources" / "imagenet100_classes.txt").read_text()
    return sorted(text.split())


def problem_about(check, *words) -> str:
    """The one problem that names every word; each problem names the set and a fix."""
    assert all(problem.startswith(f"{check.dataset}: ") and "(fix: " in problem for problem in check.problems)
    matching = [problem for problem in check.problems if all(word in problem for word in words)]
    assert len(matching) == 1, check.problems
    return matching[0]


# ---------------------------------------------------------------- miniature copies, one image per class and split


@pytest.fixture
def imagenet(tmp_path):
    """All 1000 real wnids, one image in each of train and val, with an ImageNet-1K manifest."""
    root = tmp_path / "in1k"
    for wnid in timm_wnids():
        put(root / ON_DISK["imagenet1k"].train[0] / wnid / f"{wnid}_1.JPEG")
        put(root / ON_DISK["imagenet1k"].eval[0] / wnid / f"ILSVRC2012_val_{wnid[1:]}.JPEG")
    write_manifest(root, "imagenet1k", 1000, 1000)
    return root


# The downstream sets as the rehearsal writer writes them (normae.datagen.rehearsal): one image per class and split.
DOWNSTREAM = sorted(ON_DISK.keys() - {"imagenet1k", "fashion_mnist", "ade20k"})


def miniature(tmp_path, name, manifest=True):
    root = write_rehearsal_set(name, tmp_path / name)
    if not manifest:
        (root / REHEARSAL_MANIFEST).unlink()
    return root


# ---------------------------------------------------------------- what a right copy gives


def test_importing_the_checker_imports_no_torch():
    code = (
        "import sys, normae.datacheck.check; print([m for m in ('torch', 'torchvision', 'timm') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_generated_imagenet_with_the_real_wnids_passes_and_says_so(imagenet):
    check = check_dataset("imagenet1k", str(imagenet))
    assert check.ok() and check.generated, check.problems
    assert check.facts == "1,000 classes, train 1,000, val 1,000, 32 of 32 sampled files decode"
    assert check.line().startswith("ok    imagenet1k ")
    assert f"{imagenet}  GENERATED rehearsal data (counts from normae-rehearsal.json), not the published set" in (
        check.line()
    )
    subset = check_dataset("imagenet100", str(imagenet))  # the ImageNet-1K manifest: counts of its 100 classes
    assert subset.ok() and subset.generated and subset.facts.startswith("100 classes, train 100, val 100")


@pytest.mark.parametrize("name", DOWNSTREAM)
def test_generated_miniature_passes_and_says_so(tmp_path, name):
    root = miniature(tmp_path, name)
    check = check_dataset(name, str(root))
    assert check.ok() and check.generated, check.problems
    assert f"{DATASETS[name].num_classes} classes" in check.facts
    assert check.line().startswith(f"ok    {name}") and "GENERATED rehearsal data" in check.line()


def test_generated_fashion_mnist_passes(tmp_path):
    write_fashion_mnist(tmp_path, 20, 10, gzipped=("train",))
    write_manifest(tmp_path, "fashion_mnist", 20, 10)
    check = check_dataset("fashion_mnist", str(tmp_path))
    assert check.ok() and check.generated, check.problems
    assert check.facts == "10 classes, train 20, test 10, 4 of 4 IDX files whole (headers and lengths agree)"


@pytest.mark.parametrize("name", ["generated", "digits", "fashion_mnist_subset5", "sklearn_samples"])
def test_sets_with_nothing_on_disk_are_ok(name):
    check = check_dataset(name, None)
    assert check.ok() and "nothing" in check.facts and "on disk to check" in check.facts


def test_unknown_set_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown data set 'imagenet'"):
        check_dataset("imagenet", "/data")


# ---------------------------------------------------------------- folders not set or missing


@pytest.mark.parametrize("name", ["imagenet1k", "imagenet100", "cifar10", "caltech101", "fashion_mnist"])
def test_missing_folder_says_how_to_set_it(tmp_path, name):
    folder = tmp_path / "nowhere"
    check = check_dataset(name, str(folder))
    problem = problem_about(check, f"the data folder {folder} does not exist")
    key = folder_key(name)  # ImageNet-100 is read from the imagenet1k folder
    for fix in (f"set data.{key} in config/config.yaml", f"--config data='{{{key}: /path}}'", f"--data {key}=/path"):
        assert fix in problem
    assert LAYOUTS[name] in problem and "\n" not in problem
    assert check.line().startswith(f"FAIL  {name}") and str(folder) in check.line()


def test_folder_not_set(tmp_path, monkeypatch):
    check = check_dataset("cifar100", None)
    assert "no data folder set" in problem_about(check, "set data.cifar100 in config/config.yaml", LAYOUTS["cifar100"])
    # Fashion-MNIST without a folder is looked for where its loader looks, and found or not.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NORMAE_FASHION_MNIST", str(tmp_path / "fmnist"))
    monkeypatch.setattr("normae.data.registry.DEBIAN_FASHION_MNIST", tmp_path / "debian")
    problem_about(check_dataset("fashion_mnist", None), "no folder set, and none in", "fetch-data fashion-mnist")
    write_fashion_mnist(tmp_path / "fmnist", 10, 10)
    found = check_dataset("fashion_mnist", None)
    assert found.folder == str(tmp_path / "fmnist") and "found through $NORMAE_FASHION_MNIST" in found.facts


# ---------------------------------------------------------------- wrong classes


def test_imagenet_with_999_wnids(imagenet):
    missing = timm_wnids()[500]
    shutil.rmtree(imagenet / "train" / missing)
    check = check_dataset("imagenet1k", str(imagenet))
    problem = problem_about(check, "has 999 class folders and lacks 1 of the 1000 ImageNet-1K wnids", missing)
    assert str(imagenet / "train") in problem and LAYOUTS["imagenet1k"] in problem
    assert check.line().startswith("FAIL  imagenet1k")


def test_imagenet_with_an_extra_folder(imagenet):
    (imagenet / "val" / "n99999999").mkdir()
    put(imagenet / "val" / "n99999999" / "x.JPEG")
    check = check_dataset("imagenet1k", str(imagenet))
    problem = problem_about(check, str(imagenet / "val"), "1 class folder(s) that are no ImageNet-1K wnid", "n99999999")
    assert "move them out of" in problem
    assert check_dataset("imagenet100", str(imagenet)).ok()  # ImageNet-100 reads only its listed wnids


def test_imagenet100_lacking_a_listed_wnid_or_its_images(imagenet):
    wnids = imagenet100_wnids()
    shutil.rmtree(imagenet / "val" / wnids[3])
    (imagenet / "train" / wnids[7] / f"{wnids[7]}_1.JPEG").unlink()
    check = check_dataset("imagenet100", str(imagenet))
    problem_about(check, str(imagenet / "val"), "lacks 1 of the 100 ImageNet-100 wnids", wnids[3])
    problem_about(check, "hold no image file", wnids[7], "which ImageFolder refuses")


def test_wrong_class_count_of_a_torchvision_set(tmp_path):
    root = miniature(tmp_path, "aircraft")
    (root / ON_DISK["aircraft"].folder / "variants.txt").write_text("".join(f"V{i}\n" for i in range(99)))
    check = check_dataset("aircraft", str(root))
    problem_about(check, "99 classes in the lines of", "the published set (and so the models' heads) has 100")
    problem_about(check, "images_variant_trainval.txt names 100 variant(s) not in variants.txt")


def test_splits_naming_different_classes(tmp_path):
    root = miniature(tmp_path, "dtd")
    labels = root / "dtd" / "dtd" / "labels" / "test1.txt"
    labels.write_text("".join(labels.read_text().splitlines(keepends=True)[1:]))
    write_manifest(root, "dtd", 94, 46)
    problem_about(check_dataset("dtd", str(root)), "the splits name different classes (test1 lacks 1)")


def test_caltech101_classes_need_more_than_30_images_and_no_stray_files(tmp_path):
    root = miniature(tmp_path, "caltech101")
    categories = root / ON_DISK["caltech101"].folder
    short, stray = sorted(folder.name for folder in categories.iterdir() if folder.name != "BACKGROUND_Google")[7:9]
    (categories / short / "image_0031.jpg").unlink()
    put(categories / stray / "Thumbs.db")
    check = check_dataset("caltech101", str(root))
    problem_about(check, "1 classes have 30 images or fewer", f"{short} (30)")
    problem_about(check, "are not class folders of image_0001.jpg", f"{stray} (Thumbs.db instead")
    (categories / stray / "Thumbs.db").unlink()
    check = check_dataset("caltech101", str(root))
    problem_about(check, "eval (the rest, at most 50 per class) has 100 images, normae-rehearsal.json says 101")


# ---------------------------------------------------------------- short splits


def test_short_split_against_the_manifest(tmp_path):
    root = miniature(tmp_path, "food101")
    write_manifest(root, "food101", 101, 102)
    check = check_dataset("food101", str(root))
    problem = problem_about(check, "test (", "has 101 images, normae-rehearsal.json says 102: an incomplete copy?")
    assert str(root / "food-101" / "meta" / "test.json") in problem and "regenerate the rehearsal data" in problem
    assert check.generated and check.line().startswith("FAIL  food101") and "GENERATED" in check.line()


def test_short_split_of_a_miniature_imagenet(imagenet):
    write_manifest(imagenet, "imagenet1k", 1000, 1001)
    check = check_dataset("imagenet1k", str(imagenet))
    problem_about(check, f"val ({imagenet / 'val'}) has 1,000 images, normae-rehearsal.json says 1,001")


def test_without_manifest_counts_are_the_published_ones(imagenet, tmp_path):
    (imagenet / REHEARSAL_MANIFEST).unlink()
    check = check_dataset("imagenet1k", str(imagenet))
    assert not check.generated and "GENERATED" not in check.line()
    problem = problem_about(check, f"train ({imagenet / 'train'}) has 1,000 images, the published split has 1,281,167")
    assert "an incomplete copy? (fix: re-extract ILSVRC2012_img_train.tar" in problem
    problem_about(check_dataset("imagenet100", str(imagenet)), "has 100 images, the published split has 126,689")
    fmnist = tmp_path / "fmnist"
    write_fashion_mnist(fmnist, 20, 10)
    problem_about(check_dataset("fashion_mnist", str(fmnist)), "has 20 images, the published split has 60,000")


def test_published_cifar_and_flowers_files_are_checked_against_their_md5(tmp_path):
    for name, file in (("cifar10", "cifar-10-batches-py/test_batch"), ("flowers102", "flowers-102/setid.mat")):
        check = check_dataset(name, str(miniature(tmp_path, name, manifest=False)))
        assert "a damaged or different copy" in problem_about(check, str(tmp_path / name / file), "has MD5")


def test_manifest_of_another_set(tmp_path):
    root = miniature(tmp_path, "pets")
    write_manifest(root, "cifar10", 10, 10)
    problem_about(check_dataset("pets", str(root)), "describes cifar10, not pets: data.pets names another set's folder")


# ---------------------------------------------------------------- broken files


@pytest.mark.parametrize("broken", [GARBAGE, TRUNCATED], ids=["garbage", "truncated"])
def test_undecodable_imagenet_file_is_named(imagenet, broken):
    bad = put(imagenet / "train" / timm_wnids()[3] / "broken.JPEG", broken)
    write_manifest(imagenet, "imagenet1k", 1001, 1000)
    check = check_dataset("imagenet1k", str(imagenet), samples=5000)  # more than the files: every one is sampled
    problem = problem_about(check, f"cannot decode {bad} (")
    error = "UnidentifiedImageError: cannot identify image file" if broken is GARBAGE else "OSError: Truncated"
    assert error in problem
    assert "(fix: replace the file: " in problem
    assert "2000 of 2001 sampled files decode" in check.facts


def test_listed_image_missing_or_broken(tmp_path):
    root = miniature(tmp_path, "pets")
    layout = ON_DISK["pets"]
    images = root / layout.folder / str(layout.images)
    missing, broken = [f"{line.split()[0]}.jpg" for line in (root / layout.folder / layout.eval[0]).open()][4:6]
    (images / missing).unlink()
    put(images / broken, TRUNCATED)
    check = check_dataset("pets", str(root), samples=100)
    problem_about(check, "1 of the 74 images listed in", str(images / missing))
    problem_about(check, f"cannot decode {images / broken}")


def test_sample_is_seeded(imagenet):
    put(imagenet / "train" / timm_wnids()[0] / "broken.JPEG", GARBAGE)
    write_manifest(imagenet, "imagenet1k", 1001, 1000)
    outcomes = [check_dataset("imagenet1k", str(imagenet), samples=200, seed=seed).ok() for seed in range(12)]
    assert outcomes == [check_dataset("imagenet1k", str(imagenet), samples=200, seed=s).ok() for s in range(12)]
    assert True in outcomes and False in outcomes  # a 1-in-10 draw: some seeds meet the broken file


def test_broken_array_files(tmp_path):
    root = miniature(tmp_path, "cifar100")
    batch = root / "cifar-100-python" / "test"
    batch.write_bytes(pickle.dumps({"fine_labels": [0, 1], "data": np.zeros((2, 100), np.float32)}))
    every_row = check_dataset("cifar100", str(root), samples=1000)  # more than the rows: the broken two are drawn
    problem_about(every_row, "2 sampled rows are no 3x32x32 uint8 image", str(batch))
    batch.write_bytes(b"\x80\x04 not a pickle")
    problem_about(check_dataset("cifar100", str(root)), f"cannot read batch {batch}")
    fmnist = tmp_path / "fmnist"
    write_fashion_mnist(fmnist, 10, 10, gzipped=())
    write_manifest(fmnist, "fashion_mnist", 10, 10)
    images = fmnist / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-5])
    problem = problem_about(check_dataset("fashion_mnist", str(fmnist)), f"{images} is no whole IDX file")
    assert "needs 7,840 data bytes, found 7,835" in problem


def test_a_folder_of_garbage_names_a_few_files_and_counts_the_rest(tmp_path):
    root = miniature(tmp_path, "food101")
    for image in (root / "food-101" / "images").rglob("*.jpg"):
        image.write_bytes(GARBAGE)
    check = check_dataset("food101", str(root), samples=50)
    assert len([problem for problem in check.problems if "cannot decode" in problem]) == 5
    problem_about(check, "45 more sampled files do not decode")
    assert "0 of 50 sampled files decode" in check.facts


def test_the_fix_for_imagenet100_names_the_imagenet1k_folder_it_is_read_from(tmp_path):
    check = check_dataset("imagenet100", str(tmp_path / "nowhere"))
    assert "set data.imagenet1k in config/config.yaml" in check.problems[0]
    assert "data.imagenet100" not in check.problems[0]


class _Marker:
    """A pickled object whose unpickling creates the file ``path``: what a crafted CIFAR batch could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_crafted_cifar_batch_is_never_unpickled(tmp_path):
    """n09: check-data and the loader unpickled a batch whose MD5 did not match, running its code."""
    from normae.data.classification import build_classification_dataset
    from normae.errors import CorruptDataError

    root = miniature(tmp_path, "cifar10")
    marker = tmp_path / "marker"
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    for protocol in (2, 5):
        batch.write_bytes(pickle.dumps({"labels": [0], "data": _Marker(marker)}, protocol=protocol))
        problem = problem_about(check_dataset("cifar10", str(root)), f"{batch} is not a plain data pickle")
        assert "it names io.open" in problem and not marker.exists()
        with pytest.raises(CorruptDataError, match="it names io.open"):
            build_classification_dataset("cifar10", str(root), "train", None)
        assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 5])
def test_plain_cifar_pickles_of_numpy_1_and_2_still_load(tmp_path, protocol):
    from normae.data.pickles import load_data_pickle

    data = {"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [0, 1], "name": "batch", "n": np.int64(2)}
    written = pickle.dumps(data, protocol=protocol)
    (tmp_path / "numpy2").write_bytes(written)
    names = ["numpy2"]
    if protocol == 2:  # names as text lines: numpy 1's module, as the published files name it
        (tmp_path / "numpy1").write_bytes(written.replace(b"numpy._core", b"numpy.core"))
        names.append("numpy1")
    for name in names:
        loaded = load_data_pickle(tmp_path / name)
        assert loaded["labels"] == [0, 1] and loaded["n"] == 2 and np.array_equal(loaded["data"], data["data"])


# ---------------------------------------------------------------- every fix named works, every problem once

_FIX_KEYS = re.compile(r"(?<![\w./])data\.(\w+)|--data (\w+)=|data='\{(\w+):")


def _folder_problems(tmp_path, monkeypatch) -> list[tuple[str, str]]:
    """(set, problem) for each kind of problem check-data reports about a folder unset, missing or wrong."""
    monkeypatch.chdir(tmp_path)  # no data/fashion-mnist here, nor in the other places the loaders look
    monkeypatch.setenv("NORMAE_FASHION_MNIST", str(tmp_path / "fmnist"))
    monkeypatch.setattr("normae.data.registry.DEBIAN_FASHION_MNIST", tmp_path / "debian")
    empty, a_file = tmp_path / "empty", put(tmp_path / "a_file", b"")
    empty.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    write_manifest(other, "cifar10", 10, 10)
    cases = []
    for name in ("imagenet1k", "imagenet100", "cifar10", "flowers102", "ade20k", "fashion_mnist"):
        for folder in (None, tmp_path / "nowhere", a_file, empty, other):
            check = check_dataset(name, None if folder is None else str(folder))
            cases += [(name, problem) for problem in check.problems]
    return cases


def test_every_fix_check_data_names_for_a_folder_is_accepted_and_sets_that_folder(tmp_path, monkeypatch):
    """The data map keys a fix names pass the workflow's config schema, normalised() and --data, and set the
    folder the set is read from (a fix naming data.imagenet100 was refused by the schema)."""
    cases = _folder_problems(tmp_path, monkeypatch)
    kinds = ("no data folder set", "no folder set, and none in", "does not exist", "is not a folder", "lacks")
    for kind in (*kinds, "describes cifar10, not imagenet100: data.imagenet1k names another set's folder"):
        assert any(kind in problem for _, problem in cases), kind
    config = yaml.safe_load((REPO / "config" / CONFIG_FILE).read_text())
    for name, problem in cases:
        keys = {key for match in _FIX_KEYS.finditer(problem) for key in match.groups() if key}
        assert keys, f"no data map key named in: {problem}"
        for key in keys:
            (tmp_path / "config").mkdir(exist_ok=True)
            written = {**config, "data": {**config["data"], key: "/datasets/x"}}
            (tmp_path / "config" / CONFIG_FILE).write_text(yaml.safe_dump(written))
            assert folder_for(read_data_map(tmp_path / "config"), name) == "/datasets/x", problem
            assert folder_for(with_overrides(normalised({}, "test"), [f"{key}=/datasets/y"]), name) == "/datasets/y"


def test_each_problem_is_listed_once_naming_every_set_it_concerns(tmp_path):
    """ImageNet-100 is read from the imagenet1k folder: its unset folder is one problem, listed once; the table
    line of a set does not repeat its problems."""
    checks = [check_dataset(name, None) for name in ("imagenet100", "imagenet1k", "cifar10", "cifar100")]
    checks.append(check_dataset("imagenet1k", str(tmp_path)))  # lacks train/ and val/
    lines = distinct_problems(checks)
    assert len(lines) == len(set(lines)) == 5, lines
    (imagenet,) = [line for line in lines if "no data folder set" in line and "imagenet" in line]
    assert imagenet.startswith("imagenet100, imagenet1k: no data folder set") and "data.imagenet100" not in imagenet
    assert [line.split(":")[0] for line in lines[1:3]] == ["cifar10", "cifar100"]
    for check in checks:
        assert not any(problem.split(" (fix: ")[0].split(": ", 1)[1] in check.line() for problem in check.problems)


@pytest.mark.slow  # plans the paper scale: about 9 s
def test_check_data_prints_no_line_twice(tmp_path, capsys):
    from normae.cli.main import main

    code = main(["check-data", "--scale", "paper", "--data", f"imagenet1k={tmp_path}", "--data", "cifar10=/nowhere"])
    out, err = capsys.readouterr()
    lines = (out + err).splitlines()
    assert code == 1 and len(lines) == len(set(lines)) and "data.imagenet100" not in out + err
    problems = [line for line in err.splitlines() if line.startswith("  ")]
    whats = [line.split(" (fix: ")[0] for line in problems]  # "  <sets>: <what is wrong>"
    assert len(whats) == len(set(whats)) and len(problems) == 11, problems  # 2 ImageNet, cifar10, 8 unset
    assert not any(what.split(": ", 1)[1] in out for what in whats), "a problem is also in the table"
