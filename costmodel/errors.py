"""User-facing errors: one line naming the input, the value and the rule (docs/reliability.md).

How a user's mistake is told apart from a bug in blockroof: every check of user input raises
`UserError` (or a subclass: unknown preset/hardware, bad config file, ...), or pydantic's
`ValidationError` at a boundary model (Workload, Efficiency, a spec). `user_message` turns
those, and the operating system's refusals (`OSError`: a missing file, a directory given as a
file, a read-only directory), into one line. Everything else -- a plain `ValueError`,
`KeyError`, `IndexError`, `AttributeError` from inside -- is a bug and keeps its traceback.

`check_field` validates one value against a pydantic model's field, so the ranges written once
on the model (`Workload`, `Efficiency`, the specs) also serve CLI flags, URL parameters and
widgets (`field_bounds`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import annotated_types as at
from pydantic import BaseModel, TypeAdapter, ValidationError


class UserError(ValueError):
    """Bad input from a user; the message is shown as is, without a traceback."""


def describe_validation_error(e: ValidationError, prefix: str = "",
                              rename: dict[str, str] | None = None) -> str:
    """'field.path: rule (got value)' for each error of a ValidationError, joined with '; '."""
    parts = []
    for err in e.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        if rename and loc and loc[0] in rename:
            loc[0] = f"{rename[loc[0]]} ({loc[0]})"
        where = ".".join(loc) or e.title
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        if err["type"] not in ("missing", "extra_forbidden", "value_error", "assertion_error") \
                and isinstance(got, int | float | str) and "got" not in msg:
            msg += f" (got {got!r})"
        parts.append(f"{where}: {msg}")
    text = "; ".join(parts)
    return f"{prefix}: {text}" if prefix else text


def user_message(e: BaseException) -> str | None:
    """The one-line message for an error a user caused; None for anything else (a bug)."""
    if isinstance(e, UserError):
        return str(e)
    if isinstance(e, ValidationError):
        return describe_validation_error(e)
    if isinstance(e, UnicodeDecodeError):
        return f"input is not UTF-8 text (byte {e.start}: {e.reason})"
    if isinstance(e, OSError) and (e.filename is not None or e.strerror):
        where = f"{e.filename}: " if e.filename is not None else ""
        return f"{where}{e.strerror or e}"
    return None


# --- one field's rule, stated once on a pydantic model -------------------------------------

@functools.cache
def _adapter(model: type[BaseModel], field: str) -> TypeAdapter:
    info = model.model_fields[field]
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)]
                       if info.metadata else info.annotation)


def check_field(model: type[BaseModel], field: str, value: Any, label: str | None = None,
                shown: Any = None) -> Any:
    """`value` validated by `model`'s rule for `field`; a `UserError` naming `label` (default:
    the field), the value (`shown`: as the user wrote it, e.g. before a unit conversion) and
    the rule otherwise."""
    try:
        return _adapter(model, field).validate_python(value)
    except ValidationError as e:
        rule = e.errors(include_url=False)[0]["msg"]
        got = value if shown is None else shown
        raise UserError(f"{label or field}: {rule} (got {got!r})") from None


def field_bounds(model: type[BaseModel], field: str) -> tuple[float | None, float | None]:
    """(smallest, largest) value `field` admits (gt/lt of whole numbers become ge/le), for
    widgets' min_value/max_value; None where unbounded."""
    info = model.model_fields[field]
    lo = hi = None
    whole = info.annotation is int
    for m in info.metadata:
        if isinstance(m, at.Ge):
            lo = m.ge
        elif isinstance(m, at.Gt):
            lo = m.gt + 1 if whole else m.gt
        elif isinstance(m, at.Le):
            hi = m.le
        elif isinstance(m, at.Lt):
            hi = m.lt - 1 if whole else m.lt
    return lo, hi


def finite(name: str, value: Any, lo: float | None = None, lo_open: bool = False) -> float:
    """`value` as a finite float (>= lo, or > lo when lo_open), else a `UserError`."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}: expected a number, got {value!r}") from None
    bad = not math.isfinite(x) or (lo is not None and (x <= lo if lo_open else x < lo))
    if bad:
        rule = "a finite number" + ("" if lo is None else f" {'>' if lo_open else '>='} {lo:g}")
        raise UserError(f"{name}: must be {rule}, got {value!r}")
    return x


# --- files: whole or not at all ---------------------------------------------------------------

@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write; on success it replaces `path` (`os.replace`),
    on any failure it is removed: an existing file is never half-written and no `.tmp` file
    stays behind. A directory given as the file, or a missing parent directory, is a
    `UserError` (the user named it)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a file name")
    if not path.parent.is_dir():
        raise UserError(f"{path}: the directory {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, write: Callable[[IO[Any]], None], binary: bool = False,
                 durable: bool = True) -> Path:
    """Write `path` by calling `write(file)` on a temporary file (`atomic_path`); flushed and
    fsync'd (`durable`) before it replaces `path`."""
    kw: dict[str, Any] = {} if binary else {"encoding": "utf-8"}
    with atomic_path(path) as tmp, open(tmp, "wb" if binary else "w", **kw) as f:
        write(f)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    return Path(path)


def read_json(path: str | Path, field: str = "config file") -> Any:
    """Parsed JSON of a user's file. Every way it can fail -- missing, a directory, unreadable,
    not UTF-8 text (binary garbage), not JSON -- is a `UserError` naming `field` and the file."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        return json.loads(text)
    except FileNotFoundError:
        raise UserError(f"{field}: {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{field}: {path} is a directory, expected a JSON file") from None
    except OSError as e:
        raise UserError(f"{field}: {path} cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{field}: {path} is not UTF-8 text (byte {e.start}); expected a JSON "
                        "file") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{field}: {path} is not valid JSON ({e.msg}, line {e.lineno})") \
            from None
    except RecursionError:
        raise UserError(f"{field}: {path} is nested too deeply to be a config") from None
