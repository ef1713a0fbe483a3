"""The JSONL dataset of measured points: append-only, crash-safe, resumable.

- `append_record` writes one JSON object per line, then flush + fsync: a point is on disk as
  soon as it is measured, and an interrupted run loses at most the point in flight. The file
  is never rewritten; if a crash left a partial last line, a newline is written first so the
  partial line stays on its own line (and is reported, below).
- `read_dataset` returns the records and one warning per line it could not use, with its line
  number: not JSON, not an object, or a foreign record (no ``schema`` equal to `SCHEMA`).
  Nothing is dropped silently and the file is left untouched.
- `point_id` is the identity used to resume: a run skips points already in the dataset.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "blockroof.validation.point/1"


@dataclass
class DatasetRead:
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "path:line: reason"

    def ids(self) -> set[str]:
        return {r["point_id"] for r in self.records if isinstance(r.get("point_id"), str)}


def read_dataset(path: str | Path) -> DatasetRead:
    """Every valid record of `path` (missing file: empty), with a warning per unusable line."""
    path = Path(path)
    out = DatasetRead()
    if not path.exists():
        return out
    with path.open("rb") as f:
        for i, raw in enumerate(f, start=1):
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                out.problems.append(f"{path}:{i}: not JSON ({e.msg}); line kept, ignored")
                continue
            if not isinstance(rec, dict):
                out.problems.append(f"{path}:{i}: expected a JSON object, got "
                                    f"{type(rec).__name__}; line kept, ignored")
            elif rec.get("schema") != SCHEMA:
                out.problems.append(f"{path}:{i}: foreign record (schema "
                                    f"{rec.get('schema')!r}, expected {SCHEMA!r}); "
                                    "line kept, ignored")
            else:
                out.records.append(rec)
    return out


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as a JSON line; flushed and fsync'd before returning."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record | {"schema": SCHEMA}, allow_nan=False, sort_keys=False)
    if "\n" in text:
        raise ValueError("record: serialises to more than one line")
    with path.open("ab") as f:
        if f.tell() > 0:
            with path.open("rb") as r:  # a crash may have left a partial last line
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    f.write(b"\n")
        f.write(text.encode("utf-8") + b"\n")
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write JSON via a temporary file and os.replace: an existing result is never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, allow_nan=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def point_id(fields: dict[str, Any]) -> str:
    """Stable identity of a point from its defining fields (sorted ``key=value`` pairs)."""
    return "|".join(f"{k}={fields[k]}" for k in sorted(fields))
