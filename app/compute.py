"""Estimates for the dashboard's current what-if, with errors as messages (no streamlit)."""

from __future__ import annotations

import sympy as sp

from costmodel.api import Estimate, estimate
from costmodel.api import symbol_values as costmodel_symbol_values
from costmodel.hardware import Hardware
from costmodel.implementation import get_implementation
from costmodel.parallel import Parallelism
from costmodel.spec import BlockSpec, VanillaSpec
from costmodel.workload import Workload

from .resolve import Context


def estimates(ctx: Context) -> tuple[dict[str, Estimate], list[str]]:
    """`costmodel.estimate` for every valid side of `ctx`, and one message per failure (e.g. a
    device with no compute rate for the profile's dtype)."""
    out: dict[str, Estimate] = {}
    problems: list[str] = []
    if not ctx.ready:
        return out, problems
    for label, spec in ctx.models().items():
        try:
            out[label] = estimate(spec, ctx.hardware, ctx.workload, ctx.implementation(label),
                                  parallelism=ctx.parallelism)
        except ValueError as e:
            problems.append(f"{label} model — {e}")
    return out, problems


def symbol_values(spec: VanillaSpec | BlockSpec, hardware: Hardware, workload: Workload,
                  profile: str, batch: int,
                  parallelism: Parallelism | None = None) -> dict[sp.Symbol, float]:
    """Every formula argument (`costmodel.metrics.ARGS`) at the given inputs, as `estimate`
    binds them."""
    return costmodel_symbol_values(spec, hardware, get_implementation(profile), workload, batch,
                                   parallelism)


def expectations(ctx: Context) -> tuple[str, dict[str, Estimate]]:
    """The calibrated expectation beside the bound (docs/published.md 4): one sentence saying
    which figures are bounds and which record calibrates them, and per side the calibrated
    `Estimate` where the device has a record for the profile (empty otherwise)."""
    from costmodel.calibration import calibrated_hardware, calibration_for, is_pure_roofline

    if not ctx.ready or ctx.hardware is None:
        return "", {}
    hw = ctx.hardware
    if not is_pure_roofline(hw):
        return (f"{hw.name}: efficiencies as set ({hw.efficiency.source}); figures are "
                "neither the pure bound nor a stored calibration."), {}
    rec = calibration_for(hw, ctx.profile)
    cal = calibrated_hardware(hw, ctx.profile) if rec else None
    if rec is None or cal is None:
        return (f"No calibration for {hw.id} running {ctx.profile}: every figure is a roofline "
                "BOUND (the most throughput, the least time the device allows)."), {}
    out = {}
    for label, spec in ctx.models().items():
        try:
            out[label] = estimate(spec, cal, ctx.workload, ctx.profile,
                                  parallelism=ctx.parallelism)
        except ValueError:
            continue
    return (f"Figures above are roofline BOUNDS; expected (calibrated): {rec.summary}."), out
