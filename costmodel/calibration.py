"""Calibrated defaults: fitted efficiency sets as named, sourced records (docs/published.md 4).

A datasheet `Hardware` record is a pure roofline: efficiencies 1, no overheads. Its predictions
are BOUNDS (the most throughput, the least time the device allows). A `CalibrationRecord` holds
the efficiencies and overheads fitted on published measurements of one device running one
implementation profile (for example ``h100-sxm-80gb`` running ``official-eager``, fitted on
paper Table 1), with the data, the method and the held-out error of the fit. Applied to the
datasheet record it gives the calibrated EXPECTATION.

Records live in ``costmodel/data/calibrations.json`` (written by ``blockroof validate
published --save-calibration``). Lookups:

- `calibration_for(device, implementation)`: the record, or None;
- `calibrated_hardware(device, implementation)`: the device with the record's efficiencies
  (the hook capacity planning calls to plan on the expectation), or None;
- `expectation(model, hardware, workload, implementation)`: both estimates side by side, with
  a one-line statement of which is which (`Expectation.statement`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from .api import Estimate, ModelLike, estimate
from .hardware import Efficiency, Hardware, HardwareDataError, get_hardware, write_text_atomic
from .implementation import Implementation, get_implementation
from .parallel import Parallelism
from .workload import Workload

CALIBRATIONS_PATH = Path(__file__).parent / "data" / "calibrations.json"


class CalibrationRecord(BaseModel, frozen=True, extra="forbid"):
    """Efficiencies fitted for one (device, implementation profile), with their provenance."""

    id: str = Field(min_length=1, description="<hardware>/<implementation>")
    hardware: str = Field(min_length=1, description="hardware database id")
    implementation: str = Field(min_length=1, description="implementation profile name")
    efficiency: Efficiency
    fitted_on: list[str] = Field(min_length=1, description="the published files fitted")
    sources: list[str] = Field(min_length=1, description="citations of the measurements")
    method: str = Field(min_length=1, description="how the parameters were fitted")
    train_points: int = Field(ge=1)
    heldout_mape_pct: dict[str, float] = Field(
        default_factory=dict, description="held-out MAPE per metric of the split run")
    notes: str = ""

    def __hash__(self) -> int:
        return hash(self.model_dump_json())

    @property
    def summary(self) -> str:
        err = ", ".join(f"{m} {v:.1f}%" for m, v in self.heldout_mape_pct.items())
        return (f"calibration {self.id}: {self.method}; fitted on "
                f"{', '.join(self.fitted_on)} ({self.train_points} points)"
                + (f"; held-out MAPE {err}" if err else ""))


@functools.lru_cache(maxsize=1)
def load_calibrations() -> dict[str, CalibrationRecord]:
    """Every stored record by id (cached; `save_calibration` clears the cache)."""
    if not CALIBRATIONS_PATH.is_file():
        return {}
    try:
        data = json.loads(CALIBRATIONS_PATH.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise HardwareDataError(str(CALIBRATIONS_PATH), detail=f"not valid JSON ({e})") from e
    out: dict[str, CalibrationRecord] = {}
    for i, rec in enumerate(data.get("calibrations", [])):
        try:
            r = CalibrationRecord.model_validate(rec)
        except ValidationError as e:
            raise HardwareDataError(f"{CALIBRATIONS_PATH.name}[{i}]",
                                    e.errors(include_url=False)) from e
        out[r.id] = r
    return out


def calibration_for(hardware: str | Hardware, implementation: str | Implementation
                    ) -> CalibrationRecord | None:
    """The record fitted for this device and profile, if one exists."""
    hw_id = hardware.id if isinstance(hardware, Hardware) else hardware.strip().lower()
    impl = implementation.name if isinstance(implementation, Implementation) else implementation
    return load_calibrations().get(f"{hw_id}/{impl}")


def calibrated_hardware(hardware: str | Hardware, implementation: str | Implementation
                        ) -> Hardware | None:
    """The device with the calibration record's efficiencies, or None where there is none.

    The hook for capacity planning: plan on this (the expectation) by default and on the
    datasheet record (the bound) when asked."""
    hw = get_hardware(hardware)
    rec = calibration_for(hw, implementation)
    if rec is None:
        return None
    eff = rec.efficiency.model_dump() | {"source": rec.summary}
    return type(hw).model_validate(hw.model_dump() | {"efficiency": eff})


def is_pure_roofline(hw: Hardware) -> bool:
    """True when the record applies no efficiency below 1 and no overhead (a bound)."""
    e = hw.efficiency
    return (e.matmul == 1 and e.bandwidth == 1 and e.overlap == 1 and e.kernel_overhead_s == 0
            and e.forward_overhead_s == 0 and e.generate_call_overhead_s == 0)


class Expectation(BaseModel, frozen=True):
    """The roofline bound and, where a calibration exists, the calibrated expectation."""

    bound: Estimate
    expected: Estimate | None = None
    calibration: CalibrationRecord | None = None

    @property
    def statement(self) -> str:
        if self.calibration is None:
            return (f"no calibration for {self.bound.hardware} running "
                    f"{self.bound.implementation}: every figure is a roofline bound "
                    "(most throughput, least time the device allows)")
        return (f"expected figures use {self.calibration.summary}; the bound is the pure "
                "roofline")


def expectation(model: ModelLike, hardware: str | Hardware, workload: Workload | None = None,
                implementation: str | Implementation = "static", *,
                parallelism: Parallelism | None = None) -> Expectation:
    """`estimate` on the pure roofline (the bound) and on the calibrated record if any
    (`parallelism`: as `estimate`'s, docs/parallelism.md)."""
    hw = get_hardware(hardware)
    impl = get_implementation(implementation)
    bound = estimate(model, hw, workload, impl, parallelism=parallelism)
    cal_hw = calibrated_hardware(hw, impl) if is_pure_roofline(hw) else None
    if cal_hw is None:
        return Expectation(bound=bound)
    return Expectation(bound=bound, expected=estimate(model, cal_hw, workload, impl,
                                                      parallelism=parallelism),
                       calibration=calibration_for(hw, impl))


def save_calibration(record: CalibrationRecord, path: str | Path = CALIBRATIONS_PATH) -> Path:
    """Insert or replace `record` (by id) in the JSON file, atomically."""
    path = Path(path)
    data: dict[str, Any] = {"about": [
        "blockroof calibration records: efficiencies fitted on published measurements of one "
        "device running one implementation profile (costmodel.calibration, docs/published.md)."
    ], "calibrations": []}
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
    recs = [r for r in data.get("calibrations", []) if r.get("id") != record.id]
    recs.append(record.model_dump(mode="json"))
    data["calibrations"] = sorted(recs, key=lambda r: r["id"])
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    load_calibrations.cache_clear()
    return path
