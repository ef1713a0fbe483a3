"""Streamed sweeps (costmodel.sweep_file): chunk by chunk to CSV/Parquet, the same rows as the
in-memory `sweep`, progress after every chunk, and the in-memory limit (docs/reliability.md 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from costmodel.api import plan_sweep, sweep, sweep_chunks
from costmodel.errors import UserError
from costmodel.sweep_file import write_sweep

GRID = dict(batch=[1, 3, 8], prompt_tokens=[16, 128, 999], generated_tokens=[1, 7],
            block_length=[2, 4], metrics=["ttft_s", "max_batch"])
MODELS = ["vanilla_70", "block_main_b4_5"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_file_equals_in_memory_sweep(tmp_path: Path, suffix: str) -> None:
    plan = plan_sweep(MODELS, ["h100-sxm-80gb", "l4"], **GRID)
    seen: list[tuple[int, int]] = []
    out = tmp_path / f"s{suffix}"
    rows = write_sweep(plan, out, chunk_points=5, progress=lambda d, t: seen.append((d, t)))
    expected = sweep(MODELS, ["h100-sxm-80gb", "l4"], **GRID)
    # 2 models x 2 devices, the block model in 2 block lengths: 6 structures x 18 points
    assert rows == len(expected) == plan.points == 6 * 18
    assert len(seen) == 6 * 4 and seen[-1] == (rows, rows)  # ceil(18 / 5) chunks each
    assert all(b > a for (a, _), (b, _) in zip(seen, seen[1:], strict=False))
    # CSV carries no types: block_length is a nullable integer (empty for vanilla rows)
    got = (pd.read_csv(out, dtype={"block_length": "Int64"}) if suffix == ".csv"
           else pd.read_parquet(out))
    assert list(got.columns) == list(expected.columns)
    for col in expected.columns:
        if expected[col].dtype.kind == "f":
            np.testing.assert_allclose(got[col], expected[col], rtol=1e-12)
        else:
            assert got[col].astype(str).tolist() == expected[col].astype(str).tolist()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_chunks_bound_memory_and_in_memory_limit() -> None:
    plan = plan_sweep("vanilla_70", batch=range(1, 101), prompt_tokens=range(1, 101),
                      generated_tokens=range(1, 11))
    sizes = [len(c) for c in sweep_chunks(plan, chunk_points=30_000)]
    assert sizes == [30_000] * 3 + [10_000]
    with pytest.raises(UserError, match=r"100,000 design points exceed the in-memory limit of "
                                        r"99,999 .*max_points=N"):
        sweep("vanilla_70", batch=range(1, 101), prompt_tokens=range(1, 101),
              generated_tokens=range(1, 11), max_points=99_999)
