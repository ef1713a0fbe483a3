"""The JSONL dataset: append-only, fsync'd, resumable; bad lines reported with their number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from validation.calibrate import split
from validation.dataset import SCHEMA, append_record, point_id, read_dataset, write_json_atomic
from validation.measure import round_batch, search_max_batch
from validation.suites import Point, get_suite
from validation.timing import Timing


def test_append_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    append_record(path, {"point_id": "a", "x": 1})
    append_record(path, {"point_id": "b", "x": 2})
    data = read_dataset(path)
    assert [r["x"] for r in data.records] == [1, 2]
    assert all(r["schema"] == SCHEMA for r in data.records)
    assert data.ids() == {"a", "b"} and data.problems == []


def test_bad_lines_are_reported_never_dropped_or_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    append_record(path, {"point_id": "a"})
    with path.open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"model": "x", "schema": "someone-else/1"}) + "\n")
        f.write("[1, 2]\n")
        f.write('{"point_id": "partial"')  # a crash mid-line: no newline
    before = path.read_bytes()
    data = read_dataset(path)
    assert [p.split(": ")[0].rsplit(":", 1)[1] for p in data.problems] == ["2", "3", "4", "5"]
    assert "foreign record" in data.problems[1] and "not JSON" in data.problems[0]
    assert path.read_bytes() == before  # reading never touches the file
    append_record(path, {"point_id": "b"})  # the partial line stays on its own line
    data = read_dataset(path)
    assert data.ids() == {"a", "b"} and len(data.problems) == 4
    assert path.read_bytes().startswith(before)


def test_write_json_atomic_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert not list(tmp_path.glob(".*.tmp"))


def test_point_id_is_stable() -> None:
    assert point_id({"b": 2, "a": 1}) == point_id({"a": 1, "b": 2}) == "a=1|b=2"


def test_split_is_deterministic_and_stratified() -> None:
    recs = [{"point_id": f"p{i}", "phase": ph} for i in range(9)
            for ph in ("prefill", "decode_step")]
    train, test = split(recs)
    assert split(recs) == (train, test)
    assert sorted(train + test) == list(range(len(recs)))
    for ph in ("prefill", "decode_step"):
        held = [i for i in test if recs[i]["phase"] == ph]
        assert len(held) == 3  # a third of each phase


def test_timing_summary() -> None:
    t = Timing((1.0, 2.0, 3.0, 4.0, 100.0))
    s = t.summary()
    assert s["measured_s"] == 3.0 and s["repeats"] == 5 and s["spread_s"] == 2.0


def test_round_batch_as_the_paper() -> None:
    assert [round_batch(b) for b in (7, 33, 130, 700, 3000)] == [7, 32, 128, 704, 3072]


def test_max_batch_search_finds_the_memory_limit() -> None:
    """Peak = 1 GiB + 0.25 GiB per sample on a 40 GiB device, 2 GiB kept free."""
    gib = 2**30
    calls = []

    def probe(b: int) -> int | None:
        calls.append(b)
        peak = gib + b * gib // 4
        return None if peak > 40 * gib else peak

    res = search_max_batch(probe, 40 * gib, reserve_bytes=2 * gib)
    # by hand (docs/model.md 6): B = 1, 2 give a slope of 0.25 GiB per sample, so the upper
    # bound is 2 + (40 - 1.5) / 0.25 = 156 at every step; midpoints 79 -> 80 (multiple of 4),
    # (80 + 156) // 2 = 118 -> 120, (120 + 156) // 2 = 138 -> 144 (multiple of 16); then
    # (144 + 156) // 2 = 150 rounds back to 144 and the search stops, 3 GiB still free
    assert calls == [1, 2, 80, 120, 144] and res.batch == 144
    assert all(m is None or m <= 40 * gib for m in res.trials.values())


def test_max_batch_search_when_one_does_not_fit() -> None:
    assert search_max_batch(lambda b: None, 10.0).batch == 0


def test_suites() -> None:
    assert len(get_suite("cpu").points) >= 24
    gpu = get_suite("gpu")
    assert {p.model for p in gpu.points} == {"vanilla_160", "vanilla_410", "block_main_b4_85",
                                             "block_main_b4_1.2b"}
    assert any(p.batch == "max" for p in gpu.points) and gpu.dtype == "bf16"
    smoke = get_suite("gpu", models=["vanilla_160"], smoke=True)
    assert all(p.prompt_tokens <= 32 and p.repeats == 1 for p in smoke.points)
    with pytest.raises(ValueError, match="suite"):
        get_suite("nope")
    with pytest.raises(ValueError, match="batch"):
        Point("vanilla_31", "prefill", 0, 8)
