import dataclasses
import json
import os
import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat
from torchvision import datasets, transforms
from torchvision.datasets import caltech, cifar, dtd, fgvc_aircraft, flowers102, food101, oxford_iiit_pet, utils

from normae.data.classification import CLASSIFICATION_SETS, build_classification_dataset, caltech101_split, targets_of
from normae.data.layouts import CALTECH101_SPLIT, ON_DISK
from normae.data.sources import DataNotFoundError
from normae.data.transforms import eval_transform

from helpers import write_fashion_mnist

TORCHVISION_SETS = ["cifar10", "cifar100", "flowers102", "pets", "dtd", "food101", "aircraft", "caltech101"]
STAND_INS = ["digits", "fashion_mnist_subset5", "generated"]


class NetworkUsed(Exception):
    pass


@pytest.fixture(autouse=True)
def downloads(monkeypatch):
    """Every torchvision download helper, where the loaders imported it, records its URL and raises NetworkUsed."""
    urls = []

    def refuse(url, *args, **kwargs):
        urls.append(url)
        raise NetworkUsed(url)

    for module in (utils, cifar, flowers102, oxford_iiit_pet, dtd, food101, fgvc_aircraft, caltech):
        for helper in ("download_url", "download_and_extract_archive"):
            if hasattr(module, helper):
                monkeypatch.setattr(module, helper, refuse)
    return urls


@pytest.fixture(autouse=True)
def no_checksums(monkeypatch):
    """The miniature files cannot have the real MD5 sums: only ask that they exist."""

    def file_exists(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(cifar, "check_integrity", file_exists)
    monkeypatch.setattr(flowers102, "check_integrity", file_exists)


def write_jpg(path, width, height=10, gray=False):
    """A noise JPEG; its width tells the tests which file a loader opened."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (height, width) if gray else (height, width, 3)
    Image.fromarray(np.random.default_rng(width).integers(0, 256, shape, dtype=np.uint8)).save(path)


# ---------------------------------------------------------------- miniature copies in the real layouts
# Each writer returns {"train": [(label, image size)...], "eval": [...]} in the order the loader must give.


def write_cifar(folder, batches, label_key, meta_name, meta_key, num_classes):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    expected = {"train": [], "eval": []}
    for name, split in batches:
        labels = rng.integers(0, num_classes, 3).tolist()
        images = rng.integers(0, 256, (3, 3 * 32 * 32), dtype=np.uint8)
        (folder / name).write_bytes(pickle.dumps({"batch_label": name, label_key: labels, "data": images}))
        expected[split] += [(label, (32, 32)) for label in labels]
    (folder / meta_name).write_bytes(pickle.dumps({meta_key: [f"class {i}" for i in range(num_classes)]}))
    return expected


def write_cifar_layout(root, name, label_key, meta_key, num_classes):
    layout = ON_DISK[name]
    batches = [(batch, split) for split, batches in layout.split_files().items() for batch in batches]
    return write_cifar(root / layout.folder, batches, label_key, layout.labels, meta_key, num_classes)


def write_cifar10(root):
    return write_cifar_layout(root, "cifar10", "labels", "label_names", 10)


def write_cifar100(root):
    return write_cifar_layout(root, "cifar100", "fine_labels", "fine_label_names", 100)


def write_flowers102(root):
    layout = ON_DISK["flowers102"]
    base = root / layout.folder
    labels = [1, 102, 5, 5, 1, 7, 102, 3]  # 1-based, of images 1..8
    split_ids = dict(zip(layout.train + layout.eval, ([2, 1], [4, 3, 5], [8, 6, 7])))  # trnid, valid, tstid
    for image_id in range(1, 9):
        write_jpg(base / layout.images / layout.image_name.format(image_id), width=10 + image_id)
    savemat(base / layout.labels, {"labels": np.array([labels])})
    savemat(base / layout.split_file, {key: np.array([ids]) for key, ids in split_ids.items()})

    def items(keys):
        return [(labels[image_id - 1] - 1, (10 + image_id, 10)) for key in keys for image_id in split_ids[key]]

    return {"train": items(layout.train), "eval": items(layout.eval)}


def write_pets(root):
    layout = ON_DISK["pets"]
    base = root / layout.folder
    # image id, class id (1-based), species (1 cat, 2 dog), breed id
    splits = {
        "train": [("Abyssinian_1", 1, 1, 1), ("american_bulldog_10", 2, 2, 1), ("yorkshire_terrier_3", 37, 2, 25)],
        "eval": [("american_bulldog_2", 2, 2, 1), ("Abyssinian_7", 1, 1, 1)],
    }
    expected = {}
    width = 10
    for split, rows in splits.items():
        lines = []
        for image_id, class_id, species, breed in rows:
            write_jpg(base / layout.images / f"{image_id}.jpg", width)
            lines.append(f"{image_id} {class_id} {species} {breed}\n")
            expected.setdefault(split, []).append((class_id - 1, (width, 10)))
            width += 1
        (split_file,) = layout.split_files()[split]
        (base / split_file).parent.mkdir(parents=True, exist_ok=True)
        (base / split_file).write_text("".join(lines))
    return expected


def write_dtd(root):
    layout = ON_DISK["dtd"]
    data = root / layout.folder
    classes = ["banded", "blotchy", "zigzagged"]
    expected = {"train": [], "eval": []}
    width = 10
    for split, split_file in [(split, name) for split, names in layout.split_files().items() for name in names]:
        lines = []
        for label, name in enumerate(classes):
            relative = f"{name}/{name}_{width:04d}.jpg"
            write_jpg(data / layout.images / relative, width)
            lines.append(relative + "\n")
            expected[split].append((label, (width, 10)))
            width += 1
        (data / split_file).parent.mkdir(parents=True, exist_ok=True)
        (data / split_file).write_text("".join(lines))
    (data / "labels" / "test2.txt").write_text(lines[0])  # another partition, which must not be read
    return expected


def write_food101(root):
    layout = ON_DISK["food101"]
    base = root / layout.folder
    splits = {
        "train": {"apple_pie": ["1005", "134"], "waffles": ["77"]},
        "eval": {"apple_pie": ["99"], "waffles": ["8", "31"]},
    }
    classes = ["apple_pie", "waffles"]
    expected = {"train": [], "eval": []}
    width = 10
    for split, images in splits.items():
        for label, name in enumerate(classes):
            for image_id in images[name]:
                write_jpg(base / layout.images / name / f"{image_id}.jpg", width)
                expected[split].append((label, (width, 10)))
                width += 1
        (split_file,) = layout.split_files()[split]
        (base / split_file).parent.mkdir(parents=True, exist_ok=True)
        metadata = {name: [f"{name}/{image_id}" for image_id in ids] for name, ids in images.items()}
        (base / split_file).write_text(json.dumps(metadata))
    (base / "meta" / "classes.txt").write_text("\n".join(classes) + "\n")
    return expected


def write_aircraft(root):
    layout = ON_DISK["aircraft"]
    data = root / layout.folder
    variants = ["707-320", "A300B4", "Cessna 172"]
    splits = {
        "train": [("0034309", "Cessna 172"), ("1514522", "707-320")],
        "eval": [("0062765", "A300B4"), ("2237612", "Cessna 172")],
    }
    data.mkdir(parents=True)
    (data / layout.labels).write_text("\n".join(variants) + "\n")
    expected = {}
    width = 10
    for split, rows in splits.items():
        for image_id, variant in rows:
            write_jpg(data / layout.images / f"{image_id}.jpg", width)
            expected.setdefault(split, []).append((variants.index(variant), (width, 10)))
            width += 1
        (split_file,) = layout.split_files()[split]
        (data / split_file).write_text("".join(f"{i} {v}\n" for i, v in rows))
    return expected


WRITERS = {
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "flowers102": write_flowers102,
    "pets": write_pets,
    "dtd": write_dtd,
    "food101": write_food101,
    "aircraft": write_aircraft,
}

CALTECH_HEIGHTS = {"Faces": 10, "accordion": 12}  # a class's images all have its height


@pytest.fixture
def caltech_root(tmp_path):
    """Faces: 32 images, accordion: 36 (one grayscale), and BACKGROUND_Google, which is no class."""
    layout = ON_DISK["caltech101"]
    base = tmp_path / layout.folder
    for name, count, height in ((layout.left_out, 2, 14), ("Faces", 32, 10), ("accordion", 36, 12)):
        for number in range(1, count + 1):
            write_jpg(base / name / layout.image_name.format(number), 8 + number, height, gray=number == 5)
    return tmp_path


# ---------------------------------------------------------------- torchvision-backed sets


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_reads_miniature_copy_in_real_layout(tmp_path, name):
    expected = WRITERS[name](tmp_path)
    info = CLASSIFICATION_SETS[name]
    for split in ("train", "eval"):
        dataset = build_classification_dataset(name, tmp_path, split, transform=None)
        items = [dataset[index] for index in range(len(dataset))]
        assert [(label, image.size) for image, label in items] == expected[split]
        assert all(
            image.mode == "RGB" and type(label) is int and 0 <= label < info.num_classes for image, label in items
        )
        assert targets_of(dataset) == [label for _, label in items]
    dataset = build_classification_dataset(name, tmp_path, "eval", eval_transform(info.img_size, info.mean, info.std))
    assert dataset[0][0].shape == (3, 224, 224)


@pytest.mark.parametrize("name", sorted(set(WRITERS) - {"cifar10", "cifar100"}))
def test_targets_of_opens_no_image(tmp_path, name):
    expected = WRITERS[name](tmp_path)
    train = build_classification_dataset(name, tmp_path, "train", None)
    for image in tmp_path.rglob("*.jpg"):
        image.unlink()
    assert targets_of(train) == [label for label, _ in expected["train"]]


def test_cifar10_eval_split_is_the_test_batch(tmp_path):
    write_cifar10(tmp_path)
    batch = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())
    image, label = build_classification_dataset("cifar10", tmp_path, "eval", None)[2]
    np.testing.assert_array_equal(np.asarray(image), batch["data"][2].reshape(3, 32, 32).transpose(1, 2, 0))
    assert label == batch["labels"][2]


@pytest.mark.parametrize(
    "name, torchvision_class, extra",
    [
        ("flowers102", datasets.Flowers102, {}),
        ("dtd", datasets.DTD, {"partition": 1}),
    ],
)
def test_train_split_is_train_plus_val(tmp_path, name, torchvision_class, extra):
    WRITERS[name](tmp_path)
    train = build_classification_dataset(name, tmp_path, "train", None)
    parts = [torchvision_class(tmp_path, split, **extra) for split in ("train", "val")]
    assert len(train) == len(parts[0]) + len(parts[1])
    assert targets_of(train) == targets_of(parts[0]) + targets_of(parts[1])
    assert "+val" in CLASSIFICATION_SETS[name].train_split_name


def test_caltech101_split_per_class(caltech_root):
    train = build_classification_dataset("caltech101", caltech_root, "train", None)
    evaluation = build_classification_dataset("caltech101", caltech_root, "eval", None)
    assert Counter(targets_of(train)) == {0: 30, 1: 30}
    assert Counter(targets_of(evaluation)) == {0: 2, 1: 6}
    assert not set(train.indices) & set(evaluation.indices)
    assert train.indices != list(range(30)) + list(range(32, 62))  # shuffled, not the first 30 files
    assert build_classification_dataset("caltech101", caltech_root, "train", None).indices == train.indices
    heights = list(CALTECH_HEIGHTS.values())
    for dataset in (train, evaluation):
        items = list(dataset)
        assert all(image.mode == "RGB" for image, _ in items)  # image_0005.jpg of accordion is grayscale
        assert [image.height for image, _ in items] == [heights[label] for _, label in items]
        assert targets_of(dataset) == [label for _, label in items]
    info = CLASSIFICATION_SETS["caltech101"]
    transformed = build_classification_dataset(
        "caltech101", caltech_root, "eval", eval_transform(info.img_size, info.mean, info.std)
    )
    assert all(image.shape == (3, 224, 224) for image, _ in transformed)
    train_labels = targets_of(train)
    for image in caltech_root.rglob("*.jpg"):
        image.unlink()
    assert targets_of(train) == train_labels  # read without opening an image


def test_caltech101_split_caps_eval_at_50():
    labels = [0] * 31 + [1] * 200 + [2] * 45
    train, evaluation = caltech101_split(labels, "train"), caltech101_split(labels, "eval")
    assert Counter(labels[index] for index in train) == {0: 30, 1: 30, 2: 30}
    assert Counter(labels[index] for index in evaluation) == {0: 1, 1: 50, 2: 15}
    assert train == sorted(train) and evaluation == sorted(evaluation)
    assert not set(train) & set(evaluation)
    assert caltech101_split(labels, "eval") == evaluation


def test_caltech101_split_is_the_one_check_data_and_the_rehearsal_writer_count():
    """The loader's split, check-data's counts and the rehearsal manifest's all come from CALTECH101_SPLIT."""
    sizes = [1, 30, 31, 79, 80, 81, 200]
    labels = [label for label, size in enumerate(sizes) for _ in range(size)]
    for split, column in (("train", 0), ("eval", 1)):
        taken = Counter(labels[index] for index in caltech101_split(labels, split))
        assert [taken[label] for label in range(len(sizes))] == [CALTECH101_SPLIT.sizes(n)[column] for n in sizes]
    assert [CALTECH101_SPLIT.sizes(n) for n in (1, 30, 31, 80, 81)] == [(1, 0), (30, 0), (30, 1), (30, 50), (30, 50)]


LAYOUT_HINTS = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "flowers102": "setid.mat",
    "pets": "annotations/{trainval,test}.txt",
    "dtd": "dtd/dtd/",
    "food101": "meta/{train,test}.json",
    "aircraft": "fgvc-aircraft-2013b/data",
    "caltech101": "101_ObjectCategories",
}


@pytest.mark.parametrize("name", TORCHVISION_SETS)
@pytest.mark.parametrize("split", ["train", "eval"])
def test_missing_set_explains_layout_and_download(tmp_path, name, split, downloads):
    root = tmp_path / "nothing-here"
    with pytest.raises(DataNotFoundError) as error:
        build_classification_dataset(name, root, split, None)
    message = str(error.value)
    assert str(root) in message and "--download" in message and LAYOUT_HINTS[name] in message
    assert downloads == []
    assert not root.exists()


def test_incomplete_copy_is_reported_as_missing(tmp_path):
    write_food101(tmp_path)
    (tmp_path / "food-101" / "meta" / "test.json").unlink()
    assert len(build_classification_dataset("food101", tmp_path, "train", None)) == 3
    with pytest.raises(DataNotFoundError, match="test.json"):
        build_classification_dataset("food101", tmp_path, "eval", None)


@pytest.mark.parametrize("name", TORCHVISION_SETS)
def test_download_true_asks_torchvision_to_download(tmp_path, name, downloads):
    with pytest.raises(NetworkUsed):
        build_classification_dataset(name, tmp_path, "train", None, download=True)
    assert len(downloads) == 1 and downloads[0].startswith("http")


# ---------------------------------------------------------------- ImageNet and the offline stand-ins


def test_imagenet_sets(imagenet_root):  # noqa: F811
    imagenet100 = build_classification_dataset("imagenet100", imagenet_root, "eval", None)
    assert targets_of(imagenet100) == list(range(100))
    imagenet1k = build_classification_dataset("imagenet1k", imagenet_root, "eval", None)
    assert targets_of(imagenet1k) == list(range(101))
    image, label = imagenet1k[3]
    assert image.mode == "RGB" and label == 3


@pytest.mark.parametrize("name", ["imagenet1k", "imagenet100"])
def test_missing_imagenet(tmp_path, name):
    with pytest.raises(DataNotFoundError, match="val/<wnid>") as error:
        build_classification_dataset(name, tmp_path, "eval", None)
    assert str(tmp_path / "val") in str(error.value)
    with pytest.raises(DataNotFoundError, match="needs root"):
        build_classification_dataset(name, None, "eval", None)


def test_digits_stratified_split():
    train = build_classification_dataset("digits", None, "train", None)
    test = build_classification_dataset("digits", None, "eval", None)
    assert (len(train), len(test)) == (1347, 450)
    train_counts, test_counts = np.bincount(targets_of(train)), np.bincount(targets_of(test))
    assert len(test_counts) == CLASSIFICATION_SETS["digits"].num_classes
    assert np.all(np.abs(test_counts - 0.25 * (train_counts + test_counts)) <= 1)
    assert targets_of(build_classification_dataset("digits", None, "train", None)) == targets_of(train)
    items = list(train)
    assert targets_of(train) == [label for _, label in items]
    assert all(image.mode == "RGB" and image.size == (8, 8) for image, _ in items)
    pixels = np.stack([np.asarray(image) for image, _ in items])
    assert pixels.max() == 255 and pixels.min() == 0
    assert set(np.unique(pixels)) <= {round(value * 255 / 16) for value in range(17)}


def test_fashion_mnist_subset5_keeps_classes_0_to_4(tmp_path):
    written = write_fashion_mnist(tmp_path / "fmnist", train_count=20, test_count=10)
    for split, file_split in (("train", "train"), ("eval", "test")):
        full = build_classification_dataset("fashion_mnist", tmp_path / "fmnist", split, None)
        subset = build_classification_dataset("fashion_mnist_subset5", tmp_path / "fmnist", split, None)
        images, labels = written[file_split]
        kept = np.flatnonzero(labels < 5)
        assert len(full) == len(labels) and len(subset) == len(kept) > 0
        assert targets_of(subset) == labels[kept].tolist() == [label for _, label in subset]
        assert set(targets_of(subset)) == set(range(CLASSIFICATION_SETS["fashion_mnist_subset5"].num_classes))
        np.testing.assert_array_equal(np.asarray(subset[len(kept) - 1][0])[..., 0], images[kept[-1]])


def test_generated_is_deterministic():
    to_tensor = transforms.ToTensor()
    train = build_classification_dataset("generated", None, "train", to_tensor)
    again = build_classification_dataset("generated", None, "train", to_tensor)
    evaluation = build_classification_dataset("generated", None, "eval", to_tensor)
    assert torch.equal(train[7][0], again[7][0]) and train[7][1] == again[7][1]
    assert not torch.equal(train[7][0], evaluation[7][0])
    size = CLASSIFICATION_SETS["generated"].img_size
    assert train[0][0].shape == (3, size, size)
    assert set(targets_of(train)) == set(targets_of(evaluation)) == set(range(10))
    assert len(train) < len(evaluation)


# ---------------------------------------------------------------- the registry


def test_registry_names_and_stand_ins():
    assert set(CLASSIFICATION_SETS) == {"imagenet1k", "imagenet100", "fashion_mnist", *TORCHVISION_SETS, *STAND_INS}
    for name, info in CLASSIFICATION_SETS.items():
        if name in STAND_INS:
            assert info.stand_in_for in CLASSIFICATION_SETS
            assert CLASSIFICATION_SETS[info.stand_in_for].stand_in_for is None
        else:
            assert info.stand_in_for is None, name
        assert info.train_split_name and info.eval_split_name and info.source
        assert len(info.mean) == len(info.std) == 3
    assert all(CLASSIFICATION_SETS[name].img_size == 224 for name in TORCHVISION_SETS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        CLASSIFICATION_SETS["cifar10"].num_classes = 11


def test_unknown_name_or_split():
    with pytest.raises(ValueError, match="known: .*cifar10.*caltech101.*digits"):
        build_classification_dataset("cifar11", None, "train", None)
    with pytest.raises(ValueError, match="'train' or 'eval'"):
        build_classification_dataset("digits", None, "test", None)
