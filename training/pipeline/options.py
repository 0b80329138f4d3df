"""Command-line flags derived from a config dataclass, so an option is declared once.

Each field of the config (and of a nested config dataclass, e.g. `TrainConfig.augmentation`)
is one flag: its name the field's with dashes (`batch_size` -> `--batch-size`), its help the
docstring under the field, its default the field's, its type and choices from the annotation
(a `Literal` gives the choices). A bool is a switch: `--no-<name>` where it defaults to on,
`--<name>` where off. `flag(...)` in the field's metadata says otherwise (another name, a
switch under another name, a converter) and `NO_FLAG` keeps a field off the command line.
`add_arguments` builds the flags and `config_from_args` the config back from them."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

_PLAIN_TYPES = (int, float, str, Path)  # parsed by calling the type; others need flag(type=)
_KEY = "flag"  # the key of a field's metadata that holds its Flag


@dataclass(frozen=True)
class Flag:
    """How one config field appears on the command line."""

    name: str | None = None
    """The flag (`--lr`); None: the field's name with dashes."""
    on: str | None = None
    """A bool's flag that turns it on (`--best-epoch`)."""
    off: str | None = None
    """A bool's flag that turns it off (`--whole-frame`)."""
    type: Callable[[str], Any] | None = None
    """Parses the flag's value; None: the annotation's type."""
    to_config: Callable[[Any], Any] | None = None
    """The field's value from the flag's (`--input-size 96` -> (96, 96))."""
    from_config: Callable[[Any], Any] | None = None
    """The flag's default from the field's."""
    commands: tuple[str, ...] | None = None
    """The subcommands that take the flag; None: every one built from the config."""
    enabled: bool = True
    """False: no flag (`NO_FLAG`)."""


NO_FLAG = {_KEY: Flag(enabled=False)}
"""Metadata of a field that is not a flag (set by a study, or not settable at all)."""


def flag(**options: Any) -> dict[str, Flag]:
    """Field metadata: `field(default=..., metadata=flag(name="--lr"))`."""
    return {_KEY: Flag(**options)}


@dataclass(frozen=True)
class _Option:
    field: dataclasses.Field
    dest: str
    flag: Flag
    hint: Any
    default: Any
    doc: str


def add_arguments(
    parser: argparse.ArgumentParser,
    config_class: type,
    command: str | None = None,
    only: Collection[str] | None = None,
) -> None:
    """Add a flag for each field of `config_class` that `command` takes (all of them, or the
    top-level fields named in `only`)."""
    for option in _options(config_class, command, only):
        _add(parser, option)


def config_from_args(config_class: type, args: argparse.Namespace, prefix: str = "") -> Any:
    """The config the parsed flags stand for; a field without a flag on this command keeps
    its default."""
    values: dict[str, Any] = {}
    for field, hint in _fields(config_class):
        dest = prefix + field.name
        if _is_config(hint):
            values[field.name] = config_from_args(hint, args, f"{dest}.")
        elif _flag(field).enabled and hasattr(args, dest):
            convert = _flag(field).to_config or (lambda value: value)
            values[field.name] = convert(getattr(args, dest))
    return config_class(**values)


@functools.cache
def field_docs(config_class: type) -> dict[str, str]:
    """Field name -> the docstring under it in the class body (whitespace collapsed); none
    where the source is not shipped."""
    try:
        body = ast.parse(textwrap.dedent(inspect.getsource(config_class))).body[0]
    except (OSError, TypeError):
        return {}
    assert isinstance(body, ast.ClassDef)
    docs = {}
    for node, following in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _fields(config_class: type) -> Iterator[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        yield field, hints[field.name]


def _is_config(hint: Any) -> TypeGuard[type]:
    """Whether a field holds a nested config (its fields are flags too)."""
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _flag(field: dataclasses.Field) -> Flag:
    return field.metadata.get(_KEY, Flag())


def _options(
    config_class: type,
    command: str | None,
    only: Collection[str] | None,
    prefix: str = "",
    defaults: Any = None,
) -> Iterator[_Option]:
    defaults = config_class() if defaults is None else defaults
    docs = field_docs(config_class)
    for field, hint in _fields(config_class):
        described = _flag(field)
        default = getattr(defaults, field.name)
        if only is not None and field.name not in only:
            continue
        if _is_config(hint):
            yield from _options(hint, command, None, f"{prefix}{field.name}.", default)
            continue
        if not described.enabled or (
            described.commands is not None and command not in described.commands
        ):
            continue
        if described.from_config is not None:
            default = described.from_config(default)
        doc = docs.get(field.name, "")
        yield _Option(field, prefix + field.name, described, hint, default, doc)


def _add(parser: argparse.ArgumentParser, option: _Option) -> None:
    described, hint = option.flag, _without_none(option.hint)
    help_text = option.doc.replace("%", "%%")
    if hint is bool:
        _add_switches(parser, option, help_text)
        return
    name = described.name or "--" + option.field.name.replace("_", "-")
    choices = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None
    parse = described.type or (type(choices[0]) if choices else hint)
    if parse not in _PLAIN_TYPES and described.type is None:
        raise TypeError(f"{option.dest}: give flag(type=...) to parse a {hint} from {name}")
    parser.add_argument(
        name,
        dest=option.dest,
        type=parse,
        choices=choices,
        default=option.default,
        metavar=None if choices else name.lstrip("-").replace("-", "_").upper(),
        help=f"{help_text} (default: %(default)s)",
    )


def _add_switches(parser: argparse.ArgumentParser, option: _Option, help_text: str) -> None:
    """A bool's switches: the declared ones, or the one that changes its default."""
    described, name = option.flag, option.field.name.replace("_", "-")
    switches = {True: described.on, False: described.off}
    if described.on is None and described.off is None:
        switches[not option.default] = ("--no-" if option.default else "--") + name
    for value, switch in switches.items():
        if switch is None:
            continue
        parser.add_argument(
            switch,
            dest=option.dest,
            action="store_true" if value else "store_false",
            default=option.default,
            help=f"turn {option.dest} {'on' if value else 'off'}"
            f"{' (the default)' if value == option.default else ''}; {option.dest}: {help_text}",
        )


def _without_none(hint: Any) -> Any:
    """`X | None` -> X (the flag's default may still be None)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        remaining = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(remaining) == 1:
            return remaining[0]
    return hint
