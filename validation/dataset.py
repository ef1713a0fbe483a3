"""The JSONL dataset of measured points: append-only, crash-safe, resumable.

- `append_record` writes one JSON object per line, then flush + fsync: a point is on disk as
  soon as it is measured, and an interrupted run loses at most the point in flight. The file
  is never rewritten; if a crash left a partial last line, a newline is written first so the
  partial line stays on its own line (and is reported, below).
- `read_dataset` returns the records and one warning per line it could not use, with its line
  number: not JSON, not an object, or a foreign record (no ``schema`` equal to `SCHEMA`).
  Nothing is dropped silently and the file is left untouched.
- `point_id` is the identity used to resume: a run skips points already in the dataset, and
  `read_dataset` uses the first record of a point (a later duplicate is reported, not used).
- `run_lock` keeps a second writer out of a run directory while one is running.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costmodel.errors import UserError, write_atomic

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
    seen: dict[str, int] = {}  # point_id -> line: a point counts once (the first record)
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
            elif isinstance(rec.get("point_id"), str) and rec["point_id"] in seen:
                out.problems.append(f"{path}:{i}: point {rec['point_id']!r} already on line "
                                    f"{seen[rec['point_id']]}; the first is used, this line "
                                    "kept, ignored")
            else:
                if isinstance(rec.get("point_id"), str):
                    seen[rec["point_id"]] = i
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
    """Write JSON via a temporary file and os.replace (`costmodel.errors.write_atomic`): an
    existing result is never half-written, and a failed write leaves no temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def dump(f: Any) -> None:
        json.dump(obj, f, indent=2, allow_nan=False, default=str)
        f.write("\n")

    return write_atomic(path, dump)


def point_id(fields: dict[str, Any]) -> str:
    """Stable identity of a point from its defining fields (sorted ``key=value`` pairs)."""
    return "|".join(f"{k}={fields[k]}" for k in sorted(fields))


@contextlib.contextmanager
def run_lock(out_dir: str | Path, wait: bool = True,
             say: Callable[[str], None] = print) -> Iterator[Path]:
    """Hold the run directory's lock (`DIR/.lock`, an exclusive `fcntl.flock`) for the block.

    One writer at a time: a second `validate run` into the same directory waits for the first
    to finish (`wait`), then resumes from its dataset, so no point is measured twice; with
    `wait=False` it stops with a `UserError`. The lock belongs to the open file, so a killed
    run releases it at once (no stale lock to clean up)."""
    import fcntl

    path = Path(out_dir) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            if not wait:
                raise UserError(f"--out: {out_dir} is being written by {holder}; wait for it "
                                "to finish or choose another directory") from None
            say(f"waiting: {out_dir} is being written by {holder}; this run resumes from its "
                "dataset when that one finishes")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        f.flush()
        try:
            yield path
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
