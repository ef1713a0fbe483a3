"""`blockroof validate run` end to end on the CPU: the tiny suite (CI), resume, and the gpu
suite's code paths on a smoke-sized subset (`--device cpu --dtype fp32 --smoke`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from costmodel import estimate, get_implementation
from costmodel.cli import main as cli_main
from costmodel.hardware import get_hardware
from costmodel.presets import get_preset
from costmodel.workload import Workload
from validation.dataset import read_dataset
from validation.measure import RESERVE_BYTES
from validation.pipeline import run

REQUIRED = ("model", "kind", "phase", "device", "dtype", "batch", "prompt_tokens",
            "generated_tokens", "context", "measured_s", "spread_s", "predicted_s", "spec",
            "env", "implementation", "point_id")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    assert cli_main(["validate", "run", "--device", "cpu", "--suite", "tiny", "--out",
                     str(out), "--no-progress"]) == 0
    return out


def test_tiny_suite_writes_dataset_and_report(tiny_run: Path, capsys) -> None:
    data = read_dataset(tiny_run / "dataset.jsonl")
    assert len(data.records) == 6 and not data.problems
    for rec in data.records:
        assert all(k in rec for k in REQUIRED), set(REQUIRED) - set(rec)
        assert rec["measured_s"] > 0 and rec["predicted_s"] > 0
        assert rec["env"]["threads"] == 1 and rec["env"]["torch"]  # the suite's, explicit
        assert rec["peak_allocated_bytes"] > 0
    for name in ("summary.json", "points.csv", "report.md", "scatter.png", "roofline.png",
                 "error_by_phase.png", "calibration.json", "microbench.json"):
        assert (tiny_run / name).stat().st_size > 0, name
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert set(summary["mape_pct"]) == {"prefill", "decode_step", "generate"}
    hw_files = sorted((tiny_run / "hardware").glob("*.json"), key=lambda p: p.stem)
    assert [p.stem.endswith("-calibrated") for p in hw_files] == [False, True]
    cal = get_hardware(hw_files[1])  # loads like any database entry
    assert 0 < cal.efficiency.matmul <= 1 and cal.efficiency.source.startswith("calibrated")
    assert get_hardware(hw_files[0]).kind == "cpu"


def test_resume_measures_nothing_twice_and_reports_bad_lines(tiny_run: Path, capsys) -> None:
    before = (tiny_run / "dataset.jsonl").read_bytes()
    with (tiny_run / "dataset.jsonl").open("a") as f:
        f.write('{"truncated": \n')
    res = run("cpu", "tiny", tiny_run, progress=False, quiet=True, plots=False)
    out = capsys.readouterr().out
    assert res.new_points == 0
    assert "dataset.jsonl:7: not JSON" in out
    assert out.strip().splitlines()[-1].startswith("held-out MAPE decode: ")
    assert (tiny_run / "dataset.jsonl").read_bytes().startswith(before)


def test_last_line_format(tiny_run: Path) -> None:
    res = run("cpu", "tiny", tiny_run, progress=False, quiet=True, plots=False)
    line = res.last_line()
    assert line.startswith("held-out MAPE decode: ") and " prefill: " in line
    assert line.endswith("%")


@pytest.mark.slow
def test_gpu_suite_code_paths_on_cpu(tmp_path: Path, capsys) -> None:
    """The gpu suite, smoke-sized, fp32 on the CPU: per-phase points, fixed-batch generation
    and the max-batch search (device memory chosen so that about 6 sequences fit)."""
    spec = get_preset("vanilla_160")
    impl = get_implementation("static", dtype="fp32")
    at = {b: estimate(spec, "h100-sxm-80gb", Workload(batch=b, prompt_tokens=32,
                                                      generated_tokens=8), impl)
          for b in (1, 2)}
    per_sample = at[2].memory_bytes_total - at[1].memory_bytes_total
    memory = at[1].memory_bytes_total + 5 * per_sample + RESERVE_BYTES
    res = run("cpu", "gpu", tmp_path, models=["vanilla_160"], smoke=True, dtype="fp32",
              memory_capacity_bytes=memory, progress=False, quiet=True, plots=False)
    assert res.new_points >= 6
    recs = read_dataset(tmp_path / "dataset.jsonl").records
    assert {r["phase"] for r in recs} == {"prefill", "decode_step", "generate"}
    maxed = [r for r in recs if r["max_batch"]]
    assert maxed and all(r["batch"] >= 2 for r in maxed)
    assert all("max_batch_search" in r and r["predicted_max_batch"] >= 1 for r in maxed)
    assert all(r["dtype"] == "fp32" for r in recs)
    assert not math.isnan(res.summary["mape_pct"]["prefill"]["all_calibrated"])


def test_time_budget_skips_are_retried_on_resume(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no points"):
        run("cpu", "tiny", tmp_path, limit=2, budget_s=0, progress=False, quiet=True)
    skipped = json.loads((tmp_path / "skipped.json").read_text())
    assert len(skipped) == 2 and all("time budget" in v["reason"] for v in skipped.values())
    res = run("cpu", "tiny", tmp_path, limit=2, progress=False, quiet=True, plots=False)
    assert res.new_points == 2
