"""The errors a user can fix, as one tree under ``NormaeError`` (torch-free).

``normae.cli.main`` prints any ``NormaeError`` as one line naming the fix and exits 2; anything
else is a bug and keeps its traceback. Each class also derives from the built-in exception it
replaces, so ``except FileNotFoundError`` and the like keep working.
"""

from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")


class NormaeError(Exception):
    """A problem with what the user asked for or gave (options, files, data), not a bug."""


class ConfigError(NormaeError, ValueError):
    """A bad option, spec field or configuration file entry."""


class RunFolderError(NormaeError, FileExistsError):
    """A run folder cannot be used as asked: it holds another spec, an unexpected checkpoint, or is busy."""


class CheckpointError(NormaeError, RuntimeError):
    """A checkpoint cannot be used as asked (wrong kind, wrong shapes, unreadable)."""


class DataNotFoundError(NormaeError, FileNotFoundError):
    """A data set, or part of one, is not where it was looked for."""


class CorruptDataError(NormaeError, RuntimeError):
    """A data file exists but cannot be read."""


class LaunchError(NormaeError, RuntimeError):
    """A job could not be submitted, or it ended without its result."""


class MissingResultError(NormaeError, FileNotFoundError):
    """A table, figure or comparison needs a run or analysis that has not finished, or whose file is unreadable."""


class DiskFullError(NormaeError, OSError):
    """A file could not be written because the disk (or the user's quota) is full; what was on disk is kept."""


# How torch's DataLoader re-raises an error of one of its worker processes: the same type, with the
# worker's whole traceback as the message.
WORKER_ERROR_START = "Caught "
WORKER_ERROR_TRACEBACK = "Original Traceback (most recent call last):"


def original_error(error: NormaeError) -> NormaeError:
    """The error as a DataLoader worker raised it, from torch's re-raised copy; other errors as they are.

    torch re-raises a worker's exception in the main process as the same type whose message is
    "Caught X in DataLoader worker process N. Original Traceback ...", the worker's traceback;
    the original message is what follows the last ``module.X: `` of that traceback.
    """
    text = str(error)
    if not (text.startswith(WORKER_ERROR_START) and WORKER_ERROR_TRACEBACK in text):
        return error
    kind = type(error)
    for label in (f"{kind.__module__}.{kind.__qualname__}: ", f"{kind.__qualname__}: "):
        at = text.rfind(label)
        if at >= 0:
            try:
                return kind(text[at + len(label) :].strip())
            except TypeError:  # an error type that takes other arguments keeps torch's message
                return error
    return error


def plain_worker_errors(batches: Iterable[T]) -> Generator[T, None, None]:
    """Iterate ``batches`` (a DataLoader); a ``NormaeError`` raised in one of its workers comes out as the
    worker raised it (one line, naming the file), not wrapped in the worker's traceback."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except NormaeError as error:
            plain = original_error(error)
            if plain is error:
                raise
            raise plain from None
        yield batch
