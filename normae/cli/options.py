"""Options generated from a spec's fields, so that each default and help text is written once, in the
spec (``option(default, help)``): the training commands and the bench read their options from here."""

from __future__ import annotations

import argparse
import dataclasses
import typing


def field_type(spec_cls, field: dataclasses.Field):
    """(argparse type, choices) of a spec field: Optional unwrapped, a Literal as its choices."""
    hint = typing.get_type_hints(spec_cls)[field.name]
    if typing.get_origin(hint) is not typing.Literal:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if args else hint
    if typing.get_origin(hint) is typing.Literal:
        return str, typing.get_args(hint)
    return hint, None


def add_spec_fields(group, spec_cls, names: typing.Iterable[str] | None = None) -> None:
    """One ``--option`` per spec field (or per field in ``names``), with the field's help and its default.

    Every option defaults to None, so the spec's own default applies where none is given
    (``spec_values``); the help shows that default.
    """
    fields = {field.name: field for field in dataclasses.fields(spec_cls)}
    for name in fields if names is None else names:
        field = fields[name]
        flag = "--" + field.name.replace("_", "-")
        kind, choices = field_type(spec_cls, field)
        help_text = field.metadata["help"]
        if "default" not in help_text and field.default is not None:
            help_text += f" (default: {field.default})"
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            metavar = None if choices else field.name.upper()
            group.add_argument(flag, type=kind, choices=choices, default=None, metavar=metavar, help=help_text)


def spec_values(args: argparse.Namespace, spec_cls) -> dict:
    """The spec fields given on the command line (an option left out keeps the spec's default)."""
    values = {}
    for field in dataclasses.fields(spec_cls):
        value = getattr(args, field.name, None)
        if value is not None:
            values[field.name] = value
    return values


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: the job's --cpus-per-task under SLURM, else this machine's cores; "
        "the workflow passes each job its `threads`)",
    )
