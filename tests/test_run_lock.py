"""One writer per validation run directory (validation.dataset.run_lock): two concurrent
`blockroof validate run`s into one directory measure every point once, a second writer that
must not wait stops with a clear message, and a re-benchmark never overwrites a record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from costmodel.errors import UserError
from validation.dataset import SCHEMA, append_record, read_dataset, run_lock

ROOT = Path(__file__).resolve().parent.parent


def _validate_run(out: Path) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "costmodel.cli", "validate", "run", "--device", "cpu",
         "--suite", "tiny", "--out", str(out), "--limit", "2", "--threads", "1", "--smoke",
         "--no-progress"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def test_two_concurrent_runs_measure_each_point_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = _validate_run(out)
    deadline = time.monotonic() + 60
    while not (out / ".lock").exists() or "pid" not in (out / ".lock").read_text():
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.05)
    second = _validate_run(out)  # starts while the first holds the lock
    out1, _ = first.communicate(timeout=300)
    out2, _ = second.communicate(timeout=300)
    assert first.returncode == 0, out1
    assert second.returncode == 0, out2
    assert "waiting:" in out2 and "is being written by pid" in out2
    assert "measure: 2 new point(s)" in out1 and "measure: 0 new point(s)" in out2
    lines = [json.loads(t) for t in (out / "dataset.jsonl").read_text().splitlines() if t]
    ids = [r["point_id"] for r in lines]
    assert len(ids) == 2 and len(set(ids)) == 2
    measured = [p for p in (out / "hardware").glob("*.json") if "calibrated" not in p.stem]
    assert len(measured) == 1  # the second run reused the first's record


def test_second_writer_that_must_not_wait_stops(tmp_path: Path) -> None:
    with run_lock(tmp_path, say=lambda m: None), \
            pytest.raises(UserError, match=r"is being written by pid \d+"), \
            run_lock(tmp_path, wait=False):
        pass
    with run_lock(tmp_path, wait=False):  # released: free again
        pass


def test_duplicate_points_are_used_once_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "dataset.jsonl"
    for v in (1.0, 2.0, 3.0):
        append_record(path, {"point_id": "a" if v != 2.0 else "b", "measured_s": v})
    data = read_dataset(path)
    assert [r["measured_s"] for r in data.records] == [1.0, 2.0]
    assert len(data.problems) == 1 and "point 'a' already on line 1" in data.problems[0]
    assert data.records[0]["schema"] == SCHEMA


def test_rebenchmark_gets_a_new_id(tmp_path: Path) -> None:
    from costmodel.hardware import get_hardware, save_hardware
    from validation.pipeline import _new_id

    hw = get_hardware("h100-sxm-80gb")
    assert _new_id(hw, tmp_path).id == hw.id
    save_hardware(hw, tmp_path / f"{hw.id}.json")
    again = _new_id(hw, tmp_path)
    assert again.id == f"{hw.id}-2"
    save_hardware(again, tmp_path / f"{again.id}.json")
    assert _new_id(hw, tmp_path).id == f"{hw.id}-3"
