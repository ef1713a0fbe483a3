"""Write a sweep to a file chunk by chunk, so memory stays bounded whatever the grid's size
(docs/reliability.md).

CSV and Parquet are streamed: each chunk of `api.sweep_chunks` (about 2^20 points, ~150 MB)
is appended and dropped. JSON is one document, so it is built in memory and limited to
`api.MAX_SWEEP_POINTS`. The file appears only when complete (`errors.atomic_path`): an
interrupted or failed sweep leaves neither a partial file nor a temporary one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from .api import MAX_SWEEP_POINTS, SWEEP_CHUNK_POINTS, SweepPlan, sweep_chunks, typed_frame
from .errors import UserError, atomic_path

SUFFIXES = (".csv", ".parquet", ".json")


def write_sweep(plan: SweepPlan, path: str | Path, chunk_points: int = SWEEP_CHUNK_POINTS,
                progress: Callable[[int, int], None] | None = None,
                max_json_points: int = MAX_SWEEP_POINTS,
                on_chunk: Callable[[pd.DataFrame], None] | None = None) -> int:
    """Evaluate `plan` into `path` (.csv, .parquet or .json); returns the number of rows.
    `progress(done, total)` is called after every chunk, `on_chunk(chunk)` before it is
    written."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise UserError(f"--out: file name must end in {', '.join(SUFFIXES)}, got "
                        f"{path.name!r}")
    total = plan.points
    if path.suffix == ".json" and total > max_json_points:
        raise UserError(f"--out: {total:,} design points are too many for one JSON document "
                        f"(limit {max_json_points:,}); write .csv or .parquet, which stream")
    done = 0
    with atomic_path(path) as tmp:
        if path.suffix == ".json":
            df = typed_frame(pd.concat(list(_chunks(plan, chunk_points, on_chunk)),
                                       ignore_index=True))
            df.to_json(tmp, orient="records", double_precision=15)
            done = len(df)
        elif path.suffix == ".csv":
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                for chunk in _chunks(plan, chunk_points, on_chunk):
                    typed_frame(chunk).to_csv(f, index=False, header=done == 0)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        else:
            done = _write_parquet(plan, tmp, chunk_points, progress, on_chunk)
    return done


def _chunks(plan: SweepPlan, chunk_points: int,
            on_chunk: Callable[[pd.DataFrame], None] | None) -> Iterator[pd.DataFrame]:
    for chunk in sweep_chunks(plan, chunk_points):
        if on_chunk:
            on_chunk(chunk)
        yield chunk


def _write_parquet(plan: SweepPlan, tmp: Path, chunk_points: int,
                   progress: Callable[[int, int], None] | None,
                   on_chunk: Callable[[pd.DataFrame], None] | None = None) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("--out: writing .parquet needs the pyarrow package (pip install "
                        "pyarrow), or write .csv") from None
    writer = None
    done = 0
    try:
        for chunk in _chunks(plan, chunk_points, on_chunk):
            # labels as plain strings: per-chunk categoricals would differ in their dictionaries
            labels = {c: str for c in chunk.columns if isinstance(chunk[c].dtype, pd.CategoricalDtype)}
            table = pa.Table.from_pandas(chunk.astype(labels), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table)
            done += len(chunk)
            if progress:
                progress(done, plan.points)
    finally:
        if writer is not None:
            writer.close()
    return done
