"""Fixtures shared by several test modules (plain helpers are in helpers.py), and the `gpu` marker's skip."""

import pytest

from normae.data import sources
from normae.data.fetch import fetch_fashion_mnist
from normae.data.sources import DataNotFoundError, find_fashion_mnist
from normae.experiments import plan

from helpers import EXTRA_WNID, pretrain_run, write_image


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need CUDA: skipped where there is none (torch is imported only if one is collected)."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu); torch.cuda.is_available() is false here")
    for item in gpu_tests:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def fashion_mnist_root(tmp_path_factory):
    """The real Fashion-MNIST: found where `make data` puts it, or fetched for this session."""
    try:
        return find_fashion_mnist()
    except DataNotFoundError:
        return fetch_fashion_mnist(tmp_path_factory.mktemp("data") / "fashion-mnist")


@pytest.fixture
def imagenet_root(tmp_path):
    """An ImageNet-1K style tree holding all 100 listed wnids (one or two images each) and one other wnid."""
    root = tmp_path / "imagenet"
    wnids = sources.read_class_file()
    for split in ("train", "val"):
        for index, wnid in enumerate(wnids + [EXTRA_WNID]):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            write_image(folder / f"{wnid}_0.JPEG", index)
            if split == "train" and index % 2 == 0:
                write_image(folder / f"{wnid}_1.png", index)
    return root


@pytest.fixture(scope="module")
def pretrained(request, tmp_path_factory):
    """A finished tiny pre-training run (its folder), one per test module: ``helpers.pretrain_run`` with the
    spec overrides in the module's ``PRETRAINED`` dict, if it has one (e.g. an MAE run at 28 px)."""
    overrides = getattr(request.module, "PRETRAINED", {})
    return pretrain_run(tmp_path_factory.mktemp("pretrain") / "run", **overrides)


@pytest.fixture(scope="module")
def tiny_plan():
    """The plan at the tiny scale, from the repository's config/."""
    return plan.expand(plan.load_experiments(), plan.load_scale("tiny"))
