"""`blockroof validate run`: micro-benchmarks -> timed suite -> calibration -> report.

Run directory layout (``--out DIR``):

```
DIR/.lock                          held by the run writing DIR (a second run waits)
DIR/hardware/<id>.json             measured record (reused on resume: predictions stay tied
                                   to the rates they were made with; a re-benchmark gets a
                                   new id, never overwriting it)
DIR/hardware/<id>-calibrated.json  calibrated record (atomic write)
DIR/microbench.json                per-shape matmul rates and bandwidths
DIR/dataset.jsonl                  one measured point per line (append-only)
DIR/skipped.json                   points not measured (OOM, error, time budget)
DIR/calibration.json               fitted parameters, split, residuals
DIR/points.csv, summary.json, report.md, *.png   (validation.report)
```

The last line printed is ``held-out MAPE decode: X% prefill: Y%`` (calibrated, decode-step and
prefill phases).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from costmodel.errors import UserError, describe_validation_error
from costmodel.hardware import Hardware, load_hardware_file, save_hardware

from .calibrate import calibrated_hardware, fit, split
from .dataset import read_dataset, run_lock, write_json_atomic
from .measure import Runner
from .microbench import hardware_record, run_microbench
from .predict import point_inputs
from .report import params_text, write_report
from .suites import Suite, get_suite


@dataclass
class RunResult:
    summary: dict[str, Any]
    new_points: int
    warnings: list[str]

    def last_line(self) -> str:
        m = self.summary.get("mape_pct", {})

        def pct(phase: str) -> str:
            v = m.get(phase, {}).get("heldout_calibrated")
            return "n/a" if v is None or math.isnan(v) else f"{v:.1f}%"

        return f"held-out MAPE decode: {pct('decode_step')} prefill: {pct('prefill')}"


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def measured_hardware(out: Path, device: str, suite: Suite, dtype: str, rebench: bool,
                      quiet: bool) -> Hardware:
    """The run's measured record: reused if the run directory has one, else benchmarked."""
    hw_dir = out / "hardware"
    existing = sorted((p for p in hw_dir.glob("*.json") if not p.stem.endswith("-calibrated")),
                      key=lambda p: p.stat().st_mtime) if hw_dir.is_dir() else []
    if existing and not rebench:
        hw = load_hardware_file(existing[-1])
        _say(f"microbench: reusing {existing[-1]}", quiet)
        return hw
    _say(f"microbench on {device} ...", quiet)
    dtypes = (dtype,) if device == "cpu" else tuple(dict.fromkeys((dtype, "bf16", "fp32")))
    res = run_microbench(device, dtypes=dtypes, quick=suite.quick_microbench)
    write_json_atomic(out / "microbench.json", res.to_json())
    hw = _new_id(hardware_record(res), hw_dir)
    save_hardware(hw, hw_dir / f"{hw.id}.json")
    best = ", ".join(f"{d} {v:.4g} TFLOP/s" for d, v in res.best_TFLOPs().items())
    _say(f"microbench: {best}; copy {res.copy_GBps:.4g} GB/s, read {res.read_GBps:.4g} GB/s "
         f"-> {hw.id}", quiet)
    return hw


def usable_records(records: list[dict[str, Any]], where: Path) -> list[dict[str, Any]]:
    """The records calibration can read (`predict.point_inputs` and a measured time > 0);
    a warning names each one left out and why (a hand-edited or foreign line)."""
    out = []
    for r in records:
        try:
            point_inputs(r)
            t = r["measured_s"]
            if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) \
                    or t <= 0:
                raise UserError(f"measured_s: expected a time > 0 s, got {t!r}")
        except (KeyError, TypeError, ValueError, ValidationError) as e:  # ValueError: UserError
            why = f"missing field {e.args[0]!r}" if isinstance(e, KeyError) else \
                (describe_validation_error(e) if isinstance(e, ValidationError) else str(e))
            print(f"warning: {where}: point {r.get('point_id')!r} not used: {why}", flush=True)
            continue
        out.append(r)
    return out


def _new_id(hw: Hardware, hw_dir: Path) -> Hardware:
    """`hw` under an id no record in `hw_dir` has yet (`<id>-2`, `-3`, ...): records measured
    against an earlier benchmark keep the rates they were predicted with."""
    taken = {p.stem for p in hw_dir.glob("*.json")} if hw_dir.is_dir() else set()
    new, n = hw.id, 1
    while new in taken or f"{new}-calibrated" in taken:
        n += 1
        new = f"{hw.id}-{n}"
    return hw if new == hw.id else Hardware.model_validate(hw.model_dump() | {"id": new})


def run(device: str, suite_name: str, out_dir: str | Path, wait: bool = True,
        **kwargs: Any) -> RunResult:
    """The whole validation loop (docs/design.md) for one device and suite (`_run`), holding the
    run directory's lock (`dataset.run_lock`: a second run waits, or stops if not `wait`);
    torch's thread count is restored afterwards."""
    get_suite(suite_name, kwargs.get("limit"), kwargs.get("models"), kwargs.get("smoke", False))
    previous = torch.get_num_threads()  # (the suite checked first: a refused run writes nothing)
    try:
        with run_lock(out_dir, wait, say=lambda m: print(m, flush=True)):
            return _run(device, suite_name, out_dir, **kwargs)
    finally:
        torch.set_num_threads(previous)


def _run(device: str, suite_name: str, out_dir: str | Path, *, threads: int | None = None,
        limit: int | None = None, models: list[str] | None = None, smoke: bool = False,
        dtype: str | None = None, rebench: bool = False,
        budget_s: float | None = None, memory_capacity_bytes: float | None = None,
        progress: bool = True, quiet: bool = False, plots: bool = True) -> RunResult:
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device: expected cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device: cuda requested but torch sees no CUDA device")
    suite = get_suite(suite_name, limit, models, smoke)
    if device == "cpu":  # explicit, recorded with every point
        torch.set_num_threads(threads or suite.threads or torch.get_num_threads())
    elif threads is not None:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    hw = measured_hardware(out, device, suite, dtype or suite.dtype, rebench, quiet)
    runner = Runner(suite, device, hw, out, memory_capacity_bytes=memory_capacity_bytes,
                    progress=progress, dtype=dtype)
    new = runner.run(budget_s)
    _say(f"measure: {len(new)} new point(s) in {time.monotonic() - t0:.0f} s", quiet)
    data = read_dataset(runner.dataset)
    for w in data.problems:
        print(f"warning: {w}", flush=True)
    records = [r for r in usable_records(data.records, runner.dataset)
               if r.get("hardware") == hw.id and r.get("dtype") == runner.dtype]
    if len(records) < len(data.records):
        _say(f"note: {len(data.records) - len(records)} record(s) of another device or dtype "
             "in the dataset are not used for this calibration", quiet)
    if not records:
        for w in runner.warnings:
            print(w, flush=True)
        raise ValueError("measure: no points were measured (see skipped.json)")
    train, test = split(records)
    cal = fit(records, hw, runner.dtype, train, test)
    hw_cal = calibrated_hardware(hw, cal, suite.name)
    save_hardware(hw_cal, out / "hardware" / f"{hw_cal.id}.json")
    write_json_atomic(out / "calibration.json", cal.to_json() | {
        "hardware": hw.id, "hardware_calibrated": hw_cal.id,
        "train_point_ids": [records[i]["point_id"] for i in train],
        "test_point_ids": [records[i]["point_id"] for i in test]})
    summary = write_report(records, hw, cal, hw_cal, out, suite.name, data.problems,
                           plots=plots)
    result = RunResult(summary, len(new), runner.warnings)
    for w in runner.warnings:
        print(w, flush=True)
    if not quiet:
        print(f"calibrated: {params_text(cal.params)}; bound violations: "
              f"{len(summary['bound_violations'])}; report in {out}")
        for phase, m in summary["mape_pct"].items():
            unc, calv = m["heldout_uncalibrated"], m["heldout_calibrated"]
            print(f"  {phase:12s} held-out MAPE calibrated "
                  f"{'n/a' if calv is None else f'{calv:.1f}%'}, uncalibrated "
                  f"{'n/a' if unc is None else f'{unc:.1f}%'} "
                  f"({int(m['heldout_points'])} of {int(m['points'])} points)")
    print(result.last_line(), flush=True)
    return result
