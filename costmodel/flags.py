"""Command-line flags checked once: a parser that refuses a flag given twice, and the number
checks every subcommand shares (docs/reliability.md).

argparse keeps the last of a repeated flag silently (`--prompt 1 --prompt 2` ran with 2);
`OnceParser` refuses it, naming both values. Range checks are `costmodel.errors.finite` and
`check_field` (the pydantic models' own rules), so a flag, the API and the dashboard's URL
parameters give the same answer.
"""

from __future__ import annotations

import argparse
from typing import Any

from .errors import UserError

_GIVEN = "_flags_given"


def _remember(action: argparse.Action, namespace: argparse.Namespace, value: Any,
              option_string: str | None) -> None:
    given: dict[str, Any] = namespace.__dict__.setdefault(_GIVEN, {})
    if option_string is not None and action.dest in given:
        raise argparse.ArgumentError(
            action, f"given twice ({given[action.dest]!r} and {value!r}); give it once")
    given[action.dest] = value


class _StoreOnce(argparse._StoreAction):
    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        _remember(self, namespace, values, option_string)
        super().__call__(parser, namespace, values, option_string)


class _StoreTrueOnce(argparse._StoreTrueAction):
    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        _remember(self, namespace, True, option_string)
        super().__call__(parser, namespace, values, option_string)


class OnceParser(argparse.ArgumentParser):
    """An ArgumentParser (and, through `add_subparsers`, its subcommands' parsers) whose
    `store` and `store_true` flags may be given at most once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)
        self.register("action", "store_true", _StoreTrueOnce)


def whole(flag: str, value: int | None, lo: int = 1) -> int | None:
    """`value` (None passes) if it is a whole number >= lo, else a `UserError`."""
    if value is not None and value < lo:
        raise UserError(f"{flag}: must be a whole number >= {lo}, got {value}")
    return value


def whole_list(flag: str, text: str) -> list[int]:
    """Comma-separated whole numbers >= 1 (e.g. `--prompt 128,2048`)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated whole numbers, got {text!r}") \
            from None
    bad = [v for v in values if v < 1]
    if bad:
        raise UserError(f"{flag}: every value must be a whole number >= 1, got {bad[0]}")
    return values


def conflict(flag: str, given: bool, other: str, other_given: bool) -> None:
    """Refuse two flags that ask for different things at once."""
    if given and other_given:
        raise UserError(f"{flag}: cannot be combined with {other} (choose one)")
