"""Errors the command line reports as one line naming the fix, kept free of torch so that every
command can catch them without loading it."""


class DataNotFoundError(FileNotFoundError):
    """A data set, or part of one, is not where it was looked for."""


class CorruptDataError(RuntimeError):
    """A data file exists but cannot be read."""


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used as asked (wrong kind, wrong shapes, unreadable)."""
