import collections
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from normae.data import fetch, registry
from normae.data import sources as data
from normae.data.pretrain import build_pretrain_dataset
from normae.data.registry import DATASETS, FASHION_MNIST_MEAN, FASHION_MNIST_STD, IMAGENET_MEAN, IMAGENET_STD
from normae.data.sources import CorruptDataError, DataNotFoundError
from normae.data.transforms import eval_transform, pretrain_transform

from helpers import EXTRA_WNID, write_fashion_mnist, write_idx


@pytest.fixture
def fashion_folder(tmp_path):
    folder = tmp_path / "fmnist"
    return folder, write_fashion_mnist(folder, train_count=6, test_count=4)


@pytest.fixture
def no_default_fashion_mnist(tmp_path, monkeypatch):
    """Hide every default Fashion-MNIST location of this machine from the code under test."""
    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian" / "fashion-mnist")
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


# ---------------------------------------------------------------- IDX files


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_read_idx_roundtrip(tmp_path, suffix, dtype):
    array = (np.arange(30) * (1 if dtype == np.uint8 else -1001)).reshape(2, 3, 5).astype(dtype)
    loaded = data.read_idx(write_idx(tmp_path / f"a-idx3{suffix}", array))
    assert loaded.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loaded, array)


def test_read_idx_rejects_wrong_magic(tmp_path):
    path = tmp_path / "not-idx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(CorruptDataError, match="not an IDX file") as error:
        data.read_idx(path)
    assert str(path) in str(error.value)


def test_read_idx_rejects_truncated_data(tmp_path):
    path = write_idx(tmp_path / "images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptDataError, match="3136 data bytes, found 3126") as error:
        data.read_idx(path)
    assert str(path) in str(error.value)


def test_read_idx_rejects_truncated_header(tmp_path):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 4))
    with pytest.raises(CorruptDataError, match="truncated IDX header"):
        data.read_idx(path)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "images-idx3-ubyte.gz", np.arange(4000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CorruptDataError) as error:
        data.read_idx(path)
    assert str(path) in str(error.value)


# ---------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_items_are_rgb_images_with_labels(fashion_folder, split):
    folder, written = fashion_folder
    images, labels = written[split]
    dataset = data.FashionMNIST(folder, split)
    assert len(dataset) == len(images)
    assert dataset.targets == labels.tolist()
    assert len(dataset.classes) == 10
    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image.mode == "RGB" and image.size == (28, 28)
        pixels = np.asarray(image)
        for channel in range(3):
            np.testing.assert_array_equal(pixels[..., channel], images[index])
        assert label == labels[index] and isinstance(label, int)


def test_fashion_mnist_applies_transform(fashion_folder):
    folder, written = fashion_folder
    dataset = data.FashionMNIST(folder, "test", transform=lambda image: np.asarray(image).sum())
    assert dataset[1][0] == 3 * written["test"][0][1].astype(np.int64).sum()


def test_fashion_mnist_missing_file(fashion_folder):
    folder, _ = fashion_folder
    (folder / "t10k-labels-idx1-ubyte").unlink()
    assert len(data.FashionMNIST(folder, "train")) == 6
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte") as error:
        data.FashionMNIST(folder, "test")
    assert isinstance(error.value, FileNotFoundError)
    assert "fetch-data fashion-mnist" in str(error.value)


def test_fashion_mnist_label_count_mismatch(fashion_folder):
    folder, _ = fashion_folder
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(CorruptDataError, match="labels of shape"):
        data.FashionMNIST(folder, "test")


def test_fashion_mnist_rejects_unknown_split(fashion_folder):
    with pytest.raises(ValueError, match="split"):
        data.FashionMNIST(fashion_folder[0], "val")


def test_find_fashion_mnist_order(tmp_path, monkeypatch, no_default_fashion_mnist):
    given, from_env = tmp_path / "given", tmp_path / "env"
    cache = no_default_fashion_mnist / "data" / "fashion-mnist"
    for folder in (given, from_env, cache):
        write_fashion_mnist(folder, 2, 2)
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(from_env))

    assert data.find_fashion_mnist(given) == given
    assert data.find_fashion_mnist() == from_env
    with pytest.raises(DataNotFoundError, match="given folder"):
        data.find_fashion_mnist(tmp_path / "empty")
    monkeypatch.delenv(data.FASHION_MNIST_ENV)
    assert data.find_fashion_mnist() == cache


def test_find_fashion_mnist_uses_debian_folder_last(tmp_path, monkeypatch, no_default_fashion_mnist):
    debian = tmp_path / "debian"
    write_fashion_mnist(debian, 2, 2, gzipped=("train", "test"))
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST", debian)
    assert data.find_fashion_mnist() == debian
    write_fashion_mnist(no_default_fashion_mnist / "data" / "fashion-mnist", 2, 2)
    assert data.find_fashion_mnist() == no_default_fashion_mnist / "data" / "fashion-mnist"


def test_find_fashion_mnist_error_lists_every_place(tmp_path, monkeypatch, no_default_fashion_mnist):
    incomplete = tmp_path / "incomplete"
    write_fashion_mnist(incomplete, 2, 2)
    (incomplete / "train-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path / "env"))
    with pytest.raises(DataNotFoundError, match="given folder"):
        data.find_fashion_mnist(incomplete)
    with pytest.raises(DataNotFoundError) as error:
        data.find_fashion_mnist()
    message = str(error.value)
    for place in (tmp_path / "env", no_default_fashion_mnist / "data" / "fashion-mnist", registry.DEBIAN_FASHION_MNIST):
        assert str(place) in message
    assert "fetch-data fashion-mnist" in message and "NORMAE_FASHION_MNIST" in message


# ---------------------------------------------------------------- ImageNet folders


def test_class_file_lists_100_sorted_wnids():
    wnids = data.read_class_file()
    assert len(wnids) == 100 and wnids == sorted(wnids)
    assert all(wnid.startswith("n") and len(wnid) == 9 for wnid in wnids)
    assert EXTRA_WNID not in wnids


def test_imagenet100_keeps_only_listed_wnids(imagenet_root):
    wnids = data.read_class_file()
    dataset = data.ImageNet100(imagenet_root, "train")
    assert dataset.classes == wnids
    assert dataset.class_to_idx == {wnid: label for label, wnid in enumerate(wnids)}
    assert len(dataset) == 150
    assert all(EXTRA_WNID not in path for path, _ in dataset.samples)
    assert sorted(set(dataset.targets)) == list(range(100))
    image, label = dataset[len(dataset) - 1]
    assert image.mode == "RGB" and label == 99
    assert len(data.ImageNet100(imagenet_root, "val")) == 100


def test_imagenet100_with_own_class_file(imagenet_root, tmp_path):
    chosen = data.read_class_file()[:3]
    class_file = tmp_path / "classes.txt"
    class_file.write_text("\n".join(reversed(chosen)) + "\n\n")
    dataset = data.ImageNet100(imagenet_root, "train", class_file=class_file)
    assert dataset.classes == chosen
    assert all(dataset.classes[label] == Path(path).parent.name for path, label in dataset.samples)
    assert collections.Counter(dataset.targets) == {0: 2, 1: 1, 2: 2}


def test_imagenet100_missing_wnids(imagenet_root):
    missing = data.read_class_file()[10:13]
    for wnid in missing:
        shutil.rmtree(imagenet_root / "train" / wnid)
    with pytest.raises(DataNotFoundError, match="lacks 3 of the 100") as error:
        data.ImageNet100(imagenet_root, "train")
    assert all(wnid in str(error.value) for wnid in missing)
    assert "train/<wnid>/*.JPEG" in str(error.value)


def test_imagenet1k_reads_every_class(imagenet_root):
    dataset = data.imagenet1k(imagenet_root, "train")
    assert len(dataset.classes) == 101 and dataset.classes[-1] == EXTRA_WNID
    image, label = dataset[len(dataset) - 1]
    assert image.mode == "RGB" and label == 100


@pytest.mark.parametrize("make_split_folder", [False, True])
def test_imagenet_missing_or_empty_split(tmp_path, make_split_folder):
    if make_split_folder:
        (tmp_path / "val").mkdir()
    for build in (data.imagenet1k, data.ImageNet100):
        with pytest.raises(DataNotFoundError, match="val/<wnid>/\\*.JPEG") as error:
            build(tmp_path, "val")
        assert str(tmp_path / "val") in str(error.value)


def test_corrupt_image_is_reported_by_path(imagenet_root):
    bad = imagenet_root / "train" / data.read_class_file()[0] / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    dataset = data.ImageNet100(imagenet_root, "train")
    index = [path for path, _ in dataset.samples].index(str(bad))
    with pytest.raises(CorruptDataError) as error:
        dataset[index]
    assert str(bad) in str(error.value)


# ---------------------------------------------------------------- generated images


def test_generated_images_are_deterministic():
    first, again, other = (data.GeneratedImages(8, seed=seed) for seed in (3, 3, 4))
    assert len(first) == 8 and first.classes == [f"class_{label}" for label in range(10)]
    for index in range(8):
        image, label = first[index]
        assert image.mode == "RGB" and image.size == (32, 32) and label == index % 10
        np.testing.assert_array_equal(np.asarray(image), np.asarray(again[index][0]))
        assert not np.array_equal(np.asarray(image), np.asarray(other[index][0]))
    assert not np.array_equal(np.asarray(first[0][0]), np.asarray(first[1][0]))
    with pytest.raises(IndexError):
        first[8]


def test_generated_images_have_local_structure():
    """Horizontally adjacent 4x4 patches are much closer than random pairs of patches of the same image."""
    count, patch = 100, 4
    dataset = data.GeneratedImages(count, img_size=32)
    images = np.stack([np.asarray(dataset[index][0], dtype=np.float64) / 255 for index in range(count)])
    patches = images.reshape(count, 8, patch, 8, patch, 3).transpose(0, 1, 3, 2, 4, 5).reshape(count, 8, 8, -1)
    adjacent = np.linalg.norm(patches[:, :, 1:] - patches[:, :, :-1], axis=-1).mean()
    flat = patches.reshape(count, 64, -1)
    rng = np.random.default_rng(0)
    first, second = rng.integers(64, size=(2, count, 200, 1))
    random_pairs = np.linalg.norm(
        np.take_along_axis(flat, first, 1) - np.take_along_axis(flat, second, 1), axis=-1
    ).mean()
    assert adjacent < 0.75 * random_pairs


# ---------------------------------------------------------------- transforms and the builder


@pytest.mark.parametrize("img_size", [16, 32, 48])
def test_pretrain_transform_output(img_size):
    info = DATASETS["generated"]
    transform = pretrain_transform(img_size, info.mean, info.std)
    source = data.GeneratedImages(64)
    batch = torch.stack([transform(source[index][0]) for index in range(len(source))])
    assert batch.shape == (64, 3, img_size, img_size) and batch.dtype == torch.float32
    assert abs(batch.mean().item()) < 0.3
    assert 0.7 < batch.std().item() < 1.3


def test_pretrain_transform_is_random():
    transform = pretrain_transform(32, IMAGENET_MEAN, IMAGENET_STD)
    image = data.GeneratedImages(1)[0][0]
    torch.manual_seed(0)
    assert not torch.equal(transform(image), transform(image))


def test_eval_transform():
    mean, std = FASHION_MNIST_MEAN, FASHION_MNIST_STD
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8))
    plain = eval_transform(28, mean, std, crop_pct=1.0)(image)
    expected = torch.from_numpy(np.array(image)).permute(2, 0, 1) / 255 - torch.tensor(mean)[:, None, None]
    torch.testing.assert_close(plain, expected / torch.tensor(std)[:, None, None])
    wide = Image.new("RGB", (300, 200))
    assert eval_transform(224, IMAGENET_MEAN, IMAGENET_STD)(wide).shape == (3, 224, 224)


def test_build_pretrain_dataset_generated():
    dataset = build_pretrain_dataset("generated")
    assert len(dataset) == 512
    image, label = dataset[5]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 5
    small = build_pretrain_dataset("generated", img_size=16, generated_samples=10)
    assert len(small) == 10 and small[0][0].shape == (3, 16, 16)
    train, val = (build_pretrain_dataset("generated", split=split, img_size=8) for split in ("train", "val"))
    assert train.seed != val.seed


def test_build_pretrain_dataset_fashion_mnist(fashion_folder):
    dataset = build_pretrain_dataset("fashion_mnist", root=fashion_folder[0])
    image, label = dataset[0]
    assert len(dataset) == 6 and image.shape == (3, 28, 28) and label == 0
    assert build_pretrain_dataset("fashion_mnist", root=fashion_folder[0], img_size=32)[0][0].shape == (3, 32, 32)


def test_build_pretrain_dataset_imagenet100(imagenet_root):
    dataset = build_pretrain_dataset("imagenet100", root=imagenet_root, img_size=16)
    assert len(dataset) == 150 and dataset[0][0].shape == (3, 16, 16)


def test_build_pretrain_dataset_errors():
    with pytest.raises(ValueError) as error:
        build_pretrain_dataset("cifar10")
    for name in ("fashion_mnist", "imagenet1k", "imagenet100", "generated"):
        assert name in str(error.value)
    with pytest.raises(DataNotFoundError, match="root"):
        build_pretrain_dataset("imagenet1k")


def test_datasets_info():
    assert DATASETS["fashion_mnist"].img_size == 28
    assert DATASETS["imagenet100"].num_classes == 100
    assert DATASETS["imagenet1k"].mean == IMAGENET_MEAN


# ---------------------------------------------------------------- fetching


@pytest.fixture(scope="module")
def full_size_fake(tmp_path_factory):
    """Gzipped IDX files with the real Fashion-MNIST counts (random labels and blank images)."""
    folder = tmp_path_factory.mktemp("fake-debian") / "fashion-mnist"
    rng = np.random.default_rng(0)
    for prefix, count in fetch.FASHION_MNIST_COUNTS.items():
        folder.mkdir(exist_ok=True)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.zeros((count, 28, 28), np.uint8), compresslevel=1)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, count, dtype=np.uint8))
    return folder


@pytest.fixture
def no_fetch_sources(tmp_path, monkeypatch):
    """No Debian folder and no apt-get / dpkg on PATH."""
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian" / "fashion-mnist")
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))


def test_fetch_copies_debian_folder(tmp_path, monkeypatch, full_size_fake):
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST", full_size_fake)
    dest = tmp_path / "data" / "fashion-mnist"
    assert fetch.fetch_fashion_mnist(dest) == dest
    assert sorted(path.name for path in dest.iterdir()) == sorted(fetch.GZ_FILES)
    assert sorted(path.name for path in dest.parent.iterdir()) == ["fashion-mnist"]
    for name in fetch.GZ_FILES:
        assert (dest / name).read_bytes() == (full_size_fake / name).read_bytes()


def test_fetch_keeps_files_already_there(tmp_path, full_size_fake, no_fetch_sources):
    dest = tmp_path / "dest"
    shutil.copytree(full_size_fake, dest)
    assert fetch.fetch_fashion_mnist(dest) == dest


def test_fetch_rejects_wrong_counts_and_leaves_no_partial_folder(tmp_path, monkeypatch):
    small = tmp_path / "small-debian"
    write_fashion_mnist(small, 6, 4, gzipped=("train", "test"))
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST", small)
    dest = tmp_path / "data" / "fashion-mnist"
    with pytest.raises(CorruptDataError, match="expected 60000 images"):
        fetch.fetch_fashion_mnist(dest)
    assert list(dest.parent.iterdir()) == []


def test_fetch_error_says_what_was_tried(tmp_path, no_fetch_sources):
    dest = tmp_path / "data" / "fashion-mnist"
    with pytest.raises(DataNotFoundError) as error:
        fetch.fetch_fashion_mnist(dest)
    message = str(error.value)
    assert str(registry.DEBIAN_FASHION_MNIST) in message
    assert "`apt-get` is not installed" in message
    assert "allow_download is False" in message
    assert "apt-get install dataset-fashion-mnist" in message and "--download" in message
    assert data.FASHION_MNIST_ENV in message
    assert not dest.exists()


@pytest.mark.slow
def test_fetch_real_fashion_mnist(tmp_path):
    if shutil.which("apt-get") is None and not registry.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("neither apt-get nor Debian's dataset-fashion-mnist folder is available")
    dest = fetch.fetch_fashion_mnist(tmp_path / "fashion-mnist")
    train, test = data.FashionMNIST(dest, "train"), data.FashionMNIST(dest, "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert collections.Counter(train.targets) == {label: 6000 for label in range(10)}
    assert collections.Counter(test.targets) == {label: 1000 for label in range(10)}
    image, label = train[0]
    assert image.mode == "RGB" and image.size == (28, 28) and 0 <= label < 10


# ---- n31: what check-data refuses, the ImageNet loaders refuse (check-data's own check) -------------
def _link_cases(root: Path) -> dict:
    """Each way of reaching one image twice through a symbolic link, made by a function of the train folder."""
    wnids = data.read_class_file()
    return {
        "cycle": lambda train: (train / wnids[0] / "loop").symlink_to(".."),
        "another class folder": lambda train: (train / wnids[0] / "alias").symlink_to(train / wnids[1]),
        "a linked image": lambda train: (train / wnids[0] / "x.JPEG").symlink_to(
            train / wnids[1] / f"{wnids[1]}_0.JPEG"
        ),
        "two links to one file": lambda train: [
            (train / wnids[index] / "y.JPEG").symlink_to(root.parent / "outside.JPEG") for index in (0, 1)
        ],
    }


@pytest.mark.parametrize("case", ["cycle", "another class folder", "a linked image", "two links to one file"])
@pytest.mark.parametrize("name", ["imagenet1k", "imagenet100"])
def test_imagenet_loaders_refuse_images_reached_twice_as_check_data_does(imagenet_root, case, name):
    from normae.datacheck.check import check_dataset

    shutil.copy(next((imagenet_root / "train").glob("*/*.JPEG")), imagenet_root.parent / "outside.JPEG")
    _link_cases(imagenet_root)[case](imagenet_root / "train")
    with pytest.raises(CorruptDataError, match="fix: remove") as error:
        build_pretrain_dataset(name, root=imagenet_root, img_size=16)
    assert "\n" not in str(error.value)
    problems = check_dataset(name, str(imagenet_root)).problems
    assert any(str(error.value) in problem for problem in problems), problems


def test_imagenet1k_with_more_class_folders_than_the_head_is_refused(tmp_path):
    """n50: a 1001st class folder reached sup_mae's 1000-way head as target 1000, an IndexError mid-training."""
    from normae.data.registry import imagenet1k_wnids

    wnids = imagenet1k_wnids() or [f"n{index:08d}" for index in range(1000)]
    for wnid in [*wnids, "n99999999"]:
        (tmp_path / "train" / wnid).mkdir(parents=True)
        (tmp_path / "train" / wnid / "a.JPEG").write_bytes(b"")  # ImageFolder lists by name only
    with pytest.raises(CorruptDataError, match="1001 class folders, more than ImageNet-1K's 1000 classes") as error:
        data.imagenet1k(tmp_path, "train")
    assert "n99999999" in str(error.value) and "\n" not in str(error.value)
    shutil.rmtree(tmp_path / "train" / "n99999999")
    assert len(data.imagenet1k(tmp_path, "train").classes) == 1000
