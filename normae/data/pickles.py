"""Reading the pickles of a data folder (CIFAR's batches) without running code from them (torch-free).

A pickle names the functions that rebuild its objects, and ``pickle.load`` calls them: a crafted
``data_batch_1`` in a user's folder would run its code in `normae check-data` (on a login node, in the
workflow's onstart) and in every job that loads CIFAR. A CIFAR batch holds only dicts, lists, strings,
numbers and one numpy array, so the reader allows only what rebuilds those and refuses anything else
before it is called, whatever the file's checksum.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from normae.errors import CorruptDataError

# (module, name) a numpy array or scalar (protocols 0-5) or a protocol-2 bytes object is rebuilt with:
# numpy 1 wrote numpy.core (the published CIFAR files), numpy 2 writes numpy._core.
ALLOWED_GLOBALS = frozenset(
    {(f"{core}.multiarray", name) for core in ("numpy.core", "numpy._core") for name in ("_reconstruct", "scalar")}
    | {(f"{core}.numeric", "_frombuffer") for core in ("numpy.core", "numpy._core")}
    | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
)


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a data file never needs")
        return super().find_class(module, name)


def load_data_pickle(path: str | Path) -> object:
    """The object pickled in ``path`` (Python 2 strings read as latin-1, as torchvision reads CIFAR), built
    only from plain data and numpy arrays; a CorruptDataError naming the file for anything else."""
    with open(path, "rb") as handle:
        try:
            return _DataUnpickler(handle, encoding="latin1").load()
        except pickle.UnpicklingError as error:
            raise CorruptDataError(
                f"{path} is not a plain data pickle and was not loaded ({error}): replace it with the published file"
            ) from None
