"""The errors a user can fix, as one tree under ``NormaeError`` (torch-free).

``normae.cli.main`` prints any ``NormaeError`` as one line naming the fix and exits 2; anything
else is a bug and keeps its traceback. Each class also derives from the built-in exception it
replaces, so ``except FileNotFoundError`` and the like keep working.
"""


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
