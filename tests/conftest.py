import pytest

from normae.data.sources import DataNotFoundError, find_fashion_mnist
from normae.data.fetch import fetch_fashion_mnist


@pytest.fixture(scope="session")
def fashion_mnist_root(tmp_path_factory):
    """The real Fashion-MNIST: found where `make data` puts it, or fetched for this session."""
    try:
        return find_fashion_mnist()
    except DataNotFoundError:
        return fetch_fashion_mnist(tmp_path_factory.mktemp("data") / "fashion-mnist")
