"""Calibration: five physically meaningful parameters fitted on a train split (issue 4).

The uncalibrated roofline uses the measured rates of the device (`validation.microbench`) at
efficiency 1 with no fixed costs. Calibration fits, by least squares on the log of
predicted / measured time (a relative error, so short decode steps weigh as much as long
prefills), the five `costmodel.hardware.Efficiency` fields:

- ``matmul``: fraction of the measured matmul rate that the model's matmuls reach;
- ``bandwidth``: fraction of the measured copy bandwidth the memory-bound ops reach;
- ``overlap``: how far an op's compute time hides under its memory time (`costmodel.roofline`:
  1 takes max(T_math, T_mem), 0 their sum);
- ``kernel_overhead_s``: fixed time per kernel the cost model counts (`OpCost.kernels`);
- ``forward_overhead_s``: fixed time per forward call (Python driver, hooks, launches the
  op inventory does not name).

Efficiencies are bounded to (0.001, 1] (a rate above the measured one is not physical: where a
fit pins at 1 the report says so), overlap to [0, 1] and overheads to [0, 10 ms]. Any subset can
be held fixed (`fit(fixed=...)`): the report's ablation fits with overlap held at 1, the pure
roofline form. Several starting points guard against the local minima of the piecewise
max(T_math, T_mem). The split is deterministic and stratified by phase (`split`): about a
third of each phase is held out. The calibrated record is written atomically
(`costmodel.hardware.save_hardware`) with its error band (quantiles of measured / predicted on
the held-out points) in its efficiency source and notes; the full residuals go to
``calibration.json``.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from costmodel.errors import UserError
from costmodel.hardware import Hardware

from .predict import Predictor, Rates

PARAMS = ("matmul", "bandwidth", "overlap", "kernel_overhead_s", "forward_overhead_s")
EFF_BOUNDS = (1e-3, 1.0)
OVERHEAD_MAX_S = 1e-2


@dataclass(frozen=True)
class _Param:
    """How the optimiser sees one parameter: x = to_x(value), value = of_x(x), bounds in x."""

    lo: float
    hi: float
    scale: float
    log: bool = False  # efficiencies: fitted as log(value)
    unit: float = 1.0  # overheads: fitted in microseconds

    def to_x(self, v: float) -> float:
        return math.log(v) if self.log else v / self.unit

    def of_x(self, x: float) -> float:
        return math.exp(x) if self.log else x * self.unit


_EFF = _Param(math.log(EFF_BOUNDS[0]), math.log(EFF_BOUNDS[1]), 1.0, log=True)
SPACE: dict[str, _Param] = {
    "matmul": _EFF, "bandwidth": _EFF, "overlap": _Param(0.0, 1.0, 0.3),
    "kernel_overhead_s": _Param(0.0, OVERHEAD_MAX_S * 1e6, 10.0, unit=1e-6),
    "forward_overhead_s": _Param(0.0, OVERHEAD_MAX_S * 1e6, 100.0, unit=1e-6),
}
# starting points (values, not x): compute-bound-ish, near-roofline, slow, memory-bound-ish
STARTS = (
    {"matmul": 0.5, "bandwidth": 0.7, "overlap": 0.5, "kernel_overhead_s": 5e-6,
     "forward_overhead_s": 1e-4},
    {"matmul": 0.9, "bandwidth": 0.9, "overlap": 1.0, "kernel_overhead_s": 0.0,
     "forward_overhead_s": 0.0},
    {"matmul": 0.2, "bandwidth": 0.3, "overlap": 0.0, "kernel_overhead_s": 3e-5,
     "forward_overhead_s": 1e-3},
    {"matmul": 0.7, "bandwidth": 0.5, "overlap": 0.2, "kernel_overhead_s": 1e-6,
     "forward_overhead_s": 1e-5},
)


def _hash_fraction(text: str) -> float:
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / 16**12


def split(records: list[dict[str, Any]], test_fraction: float = 1 / 3
          ) -> tuple[list[int], list[int]]:
    """(train, test) indices: per phase, the points with the lowest hash of their id are held
    out (round(fraction x n), at least 1 when the phase has >= 3 points). Deterministic."""
    by_phase: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_phase[r["phase"]].append(i)
    train, test = [], []
    for idx in by_phase.values():
        idx = sorted(idx, key=lambda i: _hash_fraction(records[i]["point_id"]))
        n_test = held_out_count(len(idx), test_fraction)
        test += idx[:n_test]
        train += idx[n_test:]
    return sorted(train), sorted(test)


def held_out_count(n: int, test_fraction: float) -> int:
    """How many of a group's n points to hold out: round(fraction x n), at least 1 when
    n >= 3, always leaving one to train on."""
    n_test = round(test_fraction * n)
    if n >= 3:
        n_test = max(1, n_test)
    return min(n_test, n - 1) if n > 1 else 0


@dataclass
class Calibration:
    """Fitted parameters, the split, and errors (MAPE in percent) per phase."""

    params: dict[str, float]
    train: list[int]
    test: list[int]
    cost: float
    pinned: list[str] = field(default_factory=list)  # parameters at a bound
    fixed: list[str] = field(default_factory=list)  # parameters held, not fitted
    band: dict[str, float] = field(default_factory=dict)  # held-out measured/predicted

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def base_rates(hw: Hardware, dtype: str) -> Rates:
    """The measured rates at efficiency 1 (the uncalibrated roofline's rates)."""
    plain = hw.with_efficiency(matmul=1.0, bandwidth=1.0, overlap=1.0, kernel_overhead_s=0.0,
                               forward_overhead_s=0.0)
    return Rates.of(plain, dtype)


def rates_for(base: Rates, params: dict[str, float]) -> Rates:
    return Rates(base.pi_flops_per_s * params["matmul"],
                 base.beta_bytes_per_s * params["bandwidth"],
                 params["kernel_overhead_s"], params["forward_overhead_s"],
                 params.get("overlap", 1.0))


def fit_params(predict: Callable[[dict[str, float]], np.ndarray], measured: np.ndarray,
               fixed: dict[str, float] | None = None
               ) -> tuple[dict[str, float], float, list[str]]:
    """Least squares on log(predict(params) / measured) over the free `PARAMS` (bounded as
    `SPACE`, started from every `STARTS` entry): (params, cost, parameters at a bound).

    `predict` maps a parameter dict to predictions in the units of `measured` (times, or any
    quantity whose relative error is the objective). Shared by the CPU calibration (`fit`) and
    the published-measurement fit (`validation.published`)."""
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(PARAMS)
    if unknown:
        raise UserError(f"fixed: unknown parameter(s) {sorted(unknown)} (known: {PARAMS})")
    free = [name for name in PARAMS if name not in fixed]

    def params_of(x: np.ndarray) -> dict[str, float]:
        return fixed | {n: SPACE[n].of_x(float(v)) for n, v in zip(free, x, strict=True)}

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(predict(params_of(x)), 1e-12) / measured)

    lo = [SPACE[n].lo for n in free]
    hi = [SPACE[n].hi for n in free]
    best = None
    for start in STARTS:
        x0 = np.array([SPACE[n].to_x(start[n]) for n in free])
        r = least_squares(residuals, x0, bounds=(lo, hi),
                          x_scale=[SPACE[n].scale for n in free], method="trf")
        if best is None or r.cost < best.cost:
            best = r
    assert best is not None
    params = {n: params_of(best.x)[n] for n in PARAMS}
    pinned = [name for name, v, a, b in zip(free, best.x, lo, hi, strict=True)
              if math.isclose(v, a, abs_tol=1e-6) or math.isclose(v, b, abs_tol=1e-6)]
    return params, float(best.cost), pinned


def fit(records: list[dict[str, Any]], hw: Hardware, dtype: str,
        train: list[int] | None = None, test: list[int] | None = None,
        fixed: dict[str, float] | None = None) -> Calibration:
    """Fit `PARAMS` (those not in `fixed`) on the train split of `records` (all of one device
    and dtype)."""
    if train is None or test is None:
        train, test = split(records)
    if not train:
        raise ValueError("calibrate: no training points")
    base = base_rates(hw, dtype)
    sub = [records[i] for i in train]
    pred = Predictor(sub, hw)
    measured = np.array([r["measured_s"] for r in sub], dtype=np.float64)
    params, cost, pinned = fit_params(lambda p: pred.predict(rates_for(base, p)), measured,
                                      fixed)
    cal = Calibration(params, list(train), list(test), cost, pinned,
                      fixed=sorted(fixed or {}))
    if test:
        held = [records[i] for i in test]
        p = Predictor(held, hw).predict(rates_for(base, params))
        ratio = np.array([r["measured_s"] for r in held]) / p
        q = np.quantile(ratio, [0.05, 0.5, 0.95])
        cal.band = {"measured_over_predicted_p05": float(q[0]),
                    "measured_over_predicted_p50": float(q[1]),
                    "measured_over_predicted_p95": float(q[2])}
    return cal


def calibrated_hardware(hw: Hardware, cal: Calibration, suite: str) -> Hardware:
    """`hw` with the fitted efficiencies, its error band in the source and notes."""
    band = cal.band
    band_text = (f"held-out measured/predicted p05 {band['measured_over_predicted_p05']:.3f}, "
                 f"median {band['measured_over_predicted_p50']:.3f}, "
                 f"p95 {band['measured_over_predicted_p95']:.3f}") if band else \
        "no held-out points"
    source = (f"calibrated by validation.calibrate on {len(cal.train)} points of suite "
              f"{suite!r} ({len(cal.test)} held out): {band_text}")
    eff = dict(cal.params) | {"source": source}
    data = hw.model_dump()
    data["id"] = f"{hw.id}-calibrated"
    data["name"] = f"{hw.name}, calibrated"
    data["efficiency"] = eff
    pinned = f" Parameters at a bound: {', '.join(cal.pinned)}." if cal.pinned else ""
    data["notes"] = f"{hw.notes} Calibrated: {band_text}.{pinned}".strip()
    return Hardware.model_validate(data)
