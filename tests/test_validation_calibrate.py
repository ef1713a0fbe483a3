"""Calibration recovers known efficiencies from synthetic measurements; report helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from costmodel.hardware import get_hardware
from validation.calibrate import base_rates, fit, rates_for, split
from validation.predict import Predictor, predict_record
from validation.report import explain_violation, paper_throughput
from validation.suites import Point

HW = get_hardware("h100-sxm-80gb")
TRUE = {"matmul": 0.55, "bandwidth": 0.8, "overlap": 0.4, "kernel_overhead_s": 6e-6,
        "forward_overhead_s": 4e-4}


def _records() -> list[dict]:
    pts = [Point(m, "prefill", b, s) for m in ("vanilla_160", "block_main_b4_85")
           for b in (1, 16) for s in (128, 2048)]
    pts += [Point(m, "decode_step", b, c) for m in ("vanilla_160", "block_main_b4_85")
            for b in (1, 64, 512) for c in (128, 2048)]
    recs = []
    for i, p in enumerate(pts):
        spec = p.spec()
        gen = spec.block_length if p.phase == "decode_step" and spec.kind == "block" else 1
        recs.append({"point_id": f"p{i}", "phase": p.phase, "spec": spec.model_dump(),
                     "implementation": "static", "dtype": "bf16", "batch": p.batch,
                     "prompt_tokens": p.prompt_tokens, "generated_tokens": gen})
    truth = Predictor(recs, HW).predict(rates_for(base_rates(HW, "bf16"), TRUE))
    for r, t in zip(recs, truth, strict=True):
        r["measured_s"] = float(t)
    return recs


def test_fit_recovers_known_parameters() -> None:
    recs = _records()
    train, test = split(recs)
    cal = fit(recs, HW, "bf16", train, test)
    for k, v in TRUE.items():
        assert cal.params[k] == pytest.approx(v, rel=0.02), k
    pred = Predictor(recs, HW).predict(rates_for(base_rates(HW, "bf16"), cal.params))
    meas = np.array([r["measured_s"] for r in recs])
    assert np.max(np.abs(pred / meas - 1)) < 0.01
    assert cal.band["measured_over_predicted_p50"] == pytest.approx(1.0, abs=0.01)


def test_fixed_parameters_are_held_and_cost_accuracy() -> None:
    recs = _records()
    train, test = split(recs)
    held = fit(recs, HW, "bf16", train, test, fixed={"overlap": 1.0})
    assert held.params["overlap"] == 1.0 and held.fixed == ["overlap"]
    assert "overlap" not in held.pinned
    # the truth has overlap 0.4: the max-only form cannot fit it exactly
    pred = Predictor(recs, HW).predict(rates_for(base_rates(HW, "bf16"), held.params))
    meas = np.array([r["measured_s"] for r in recs])
    assert np.max(np.abs(pred / meas - 1)) > 0.01
    with pytest.raises(ValueError, match="fixed: unknown parameter"):
        fit(recs, HW, "bf16", train, test, fixed={"overlaps": 1.0})


def test_less_overlap_is_never_faster() -> None:
    recs = _records()
    pred, base = Predictor(recs, HW), base_rates(HW, "bf16")
    times = [pred.predict(rates_for(base, TRUE | {"overlap": o})) for o in (1.0, 0.5, 0.0)]
    assert np.all(times[0] <= times[1]) and np.all(times[1] <= times[2])
    assert np.any(times[0] < times[2])


def test_uncalibrated_prediction_is_the_pure_roofline() -> None:
    rec = _records()[0]
    fast = predict_record(rec, HW)
    slow = predict_record(rec, HW.with_efficiency(matmul=0.5, kernel_overhead_s=1e-5))
    assert fast < slow and fast == pytest.approx(
        Predictor([rec], HW).predict(base_rates(HW, "bf16"))[0])


def test_violation_explanations_name_the_rate() -> None:
    row = pd.Series({"attained_bytes_per_s": 9e12, "attained_flops_per_s": 1e12,
                     "bytes": 5e7})
    assert "bandwidth" in explain_violation(row, HW, "bf16")
    row = pd.Series({"attained_bytes_per_s": 1e12, "attained_flops_per_s": 1e12, "bytes": 5e7})
    assert "micro-benchmark" in explain_violation(row, HW, "bf16")


def test_paper_throughput_lookup() -> None:
    assert paper_throughput("vanilla_410", 2048, 128) == pytest.approx(800.0)
    assert paper_throughput("block_main_b4_1.2b", 128, 2048) == pytest.approx(25700.0)
    assert paper_throughput("vanilla_410", 100, 100) is None
