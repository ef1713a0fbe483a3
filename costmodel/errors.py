"""User-facing error messages: one line naming the field and the rule (DESIGN.md style)."""

from __future__ import annotations

from pydantic import ValidationError


class UserError(ValueError):
    """Bad input from a user; the message is shown as is, without a traceback."""


def describe_validation_error(e: ValidationError, prefix: str = "",
                              rename: dict[str, str] | None = None) -> str:
    """'field.path: rule' for each error of a pydantic ValidationError, joined with '; '."""
    parts = []
    for err in e.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        if rename and loc and loc[0] in rename:
            loc[0] = f"{rename[loc[0]]} ({loc[0]})"
        where = ".".join(loc) or e.title
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    text = "; ".join(parts)
    return f"{prefix}: {text}" if prefix else text
