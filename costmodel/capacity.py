"""Capacity planning: how many GPUs, at which batch, for a target throughput or latency.

One replica holds the whole model on tp x pp devices (`Parallelism`; one device unless asked
otherwise); replicas serve independent requests, so the fleet's throughput is replicas x the
replica's throughput. With ``parallelism="search"`` every layout (tp, pp) with tp x pp <=
`max_gpus_per_replica` that can shard the model is planned and the one needing the fewest GPUs
wins (ties: lower TPOT); `CapacityPlan.layouts` says why each alternative lost
(docs/parallelism.md 5). On one device type cost is GPUs x price, so fewest GPUs is cheapest.

    >>> from costmodel.capacity import plan_capacity
    >>> plan = plan_capacity("vanilla_410", "h100-sxm-80gb", Workload(prompt_tokens=2048,
    ...                      generated_tokens=128), target_tokens_per_s=1e6, tpot_bound_s=0.02)
    >>> plan.batch, plan.replicas, plan.gpus

The batch per replica is the largest batch that fits the device memory (the max batch, as the
paper measures throughput, docs/model.md 5.1) or, given a per-token latency bound, the largest batch
whose TPOT (time per output token after the first) meets it. Candidate batches 1..max_batch are
evaluated in one vectorised `costmodel.sweep` call. `workload.batch` is ignored: the plan
chooses the batch; `workload.memory_reserve_bytes` is kept free as in `estimate`.

Costs are in the currency of `price_per_gpu_hour` (whatever the caller uses).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from .api import HardwareLike, ModelLike, estimate, grid_metrics, resolve_model, sweep
from .errors import UserError
from .hardware import Hardware, get_hardware
from .implementation import Implementation, get_implementation
from .parallel import Parallelism, check_parallelism, get_parallelism
from .workload import Workload

CURVE_METRICS: tuple[str, ...] = (
    "tpot_s", "ttft_s", "throughput_tokens_per_s", "memory_bytes_total",
)


class LayoutOption(BaseModel, frozen=True):
    """One (tp, pp) layout considered by the search, and its verdict."""

    tp: int
    pp: int
    gpus_per_replica: int
    batch: int | None = None
    max_batch: int | None = None
    tpot_s: float | None = None
    throughput_tokens_per_s_per_replica: float | None = None
    replicas: int | None = None
    gpus: int | None = None
    verdict: str  # "chosen", or why it lost


class CapacityPlan(BaseModel, frozen=True):
    """The answer of `plan_capacity`; per-replica figures are for one device at `batch`."""

    model: str
    hardware: str
    implementation: str
    prompt_tokens: int
    generated_tokens: int
    target_tokens_per_s: float | None
    tpot_bound_s: float | None
    price_per_gpu_hour: float | None
    batch: int
    limited_by: Literal["memory", "latency"]
    ttft_s: float
    tpot_s: float
    request_time_s: float
    memory_bytes_per_replica: float
    throughput_tokens_per_s_per_replica: float
    replicas: int
    gpus_per_replica: int
    gpus: int
    throughput_tokens_per_s_total: float
    cost_per_hour: float | None
    cost_per_million_tokens: float | None
    cost_per_million_tokens_at_target: float | None
    # the cost model's inverse questions, from the Estimate at the chosen batch
    max_batch: int
    compute_bound_batch: float
    kv_overtakes_weights_context: float
    tp: int = 1
    pp: int = 1
    # what the figures rest on: a calibrated expectation, or the roofline bound (docs/published.md 4)
    basis: str = ""
    memory_bytes_per_gpu: float = 0.0
    layouts: list[LayoutOption] = []
    reason: str = ""


def _check_positive(name: str, value: float | None, allow_zero: bool = False) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}: expected a number, got {value!r}") from None
    ok = math.isfinite(x) and (x >= 0 if allow_zero else x > 0)
    if not ok:
        rule = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise UserError(f"{name}: must be {rule}, got {value!r}")
    return x


def _workload(workload: Workload | None, batch: int | Literal["max"]) -> Workload:
    wl = workload or Workload()
    return Workload(batch=batch, prompt_tokens=wl.prompt_tokens,
                    generated_tokens=wl.generated_tokens,
                    memory_reserve_bytes=wl.memory_reserve_bytes)


def batch_curve(
    model: ModelLike,
    hardware: HardwareLike,
    workload: Workload | None = None,
    implementation: str | Implementation = "static",
    max_batch: int | None = None,
    *,
    parallelism: Parallelism | None = None,
) -> pd.DataFrame:
    """TPOT, TTFT, throughput and total memory for every batch 1..max_batch (one sweep call).

    Columns: batch, tpot_s, ttft_s, throughput_tokens_per_s, memory_bytes_total. `max_batch`
    defaults to the model's max batch on the device; the frame is empty when nothing fits.
    """
    wl = _workload(workload, 1)
    if max_batch is None:
        max_batch = estimate(model, hardware, wl, implementation,
                             parallelism=parallelism).max_batch
    if max_batch < 1:
        return pd.DataFrame(columns=["batch", *CURVE_METRICS])
    df = sweep(model, hardware, batch=np.arange(1, int(max_batch) + 1),
               prompt_tokens=wl.prompt_tokens, generated_tokens=wl.generated_tokens,
               implementation=implementation, metrics=CURVE_METRICS,
               memory_reserve_bytes=wl.memory_reserve_bytes, parallelism=parallelism)
    out = df[["batch", *CURVE_METRICS]].copy()
    out["batch"] = out["batch"].astype(np.int64)
    return out.reset_index(drop=True)


def candidate_layouts(spec, max_gpus_per_replica: int) -> list[tuple[Parallelism, str]]:
    """Every (tp, pp) with tp x pp <= max_gpus_per_replica, tp and pp powers of two, with ""
    or the rule that rules it out (costmodel.parallel)."""
    out = []
    tp = 1
    while tp <= max_gpus_per_replica:
        pp = 1
        while tp * pp <= max_gpus_per_replica:
            par = Parallelism(tp=tp, pp=pp)
            try:
                check_parallelism(spec, par)
                why = ""
            except UserError as e:
                why = f"invalid: {e}"
            out.append((par, why))
            pp *= 2
        tp *= 2
    return out


def _tpot_curves(spec, hw, impl, workload, bases: dict[tuple[int, int], object]
                 ) -> dict[tuple[int, int], np.ndarray]:
    """TPOT at batches 1..max_batch of every layout in `bases` ((tp, pp) -> its batch-1
    Estimate): the whole candidate space of the search through the sweep path (one fused,
    vectorised evaluation per layout, no DataFrame; docs/performance.md 3). Entry b - 1 is
    batch b."""
    wl = _workload(workload, 1)
    s, g = np.array([float(wl.prompt_tokens)]), np.array([float(wl.generated_tokens)])
    out = {}
    for (tp, pp), base in bases.items():
        if base.max_batch >= 1:
            got = grid_metrics(spec, hw, impl, Parallelism(tp=tp, pp=pp),
                               np.arange(1.0, base.max_batch + 1), s, g, ("tpot_s",),
                               wl.memory_reserve_bytes)
            out[(tp, pp)] = np.broadcast_to(got["tpot_s"], (base.max_batch,))
    return out


def _plan_layout(spec, hw, impl, workload, par: Parallelism, bound: float | None, base=None,
                 tpot: np.ndarray | None = None):
    """(estimate at the chosen batch, batch, limited_by, base estimate) or a verdict string.
    `base` (the Estimate at batch 1) and `tpot` (TPOT at batches 1..max_batch) when known."""
    if base is None:
        base = estimate(spec, hw, _workload(workload, 1), impl, parallelism=par)
    if base.max_batch < 1:
        return (f"does not fit: {base.weights_bytes_per_gpu / 2**30:.2f} GiB of weights per GPU"
                f" + {base.memory_bytes_per_gpu / 2**30 - base.weights_bytes_per_gpu / 2**30:.3f}"
                f" GiB for one sequence exceed {hw.capacity_bytes() / 2**30:.1f} GiB")
    batch, limited_by = base.max_batch, "memory"
    if bound is not None:
        if tpot is None:
            curve = batch_curve(spec, hw, workload, impl, max_batch=base.max_batch,
                                parallelism=par)
            tpot = curve["tpot_s"].to_numpy()
        ok = np.flatnonzero(tpot <= bound)
        if ok.size == 0:
            return (f"misses the TPOT bound: {base.tpot_s * 1e3:.4g} ms per token at batch 1 > "
                    f"{bound * 1e3:.4g} ms")
        batch = int(ok[-1]) + 1
        if batch < base.max_batch:
            limited_by = "latency"
    est = base if batch == 1 else estimate(spec, hw, _workload(workload, batch), impl,
                                           parallelism=par)
    return est, batch, limited_by, base


def planning_hardware(hw: Hardware, impl: Implementation, use_bound: bool = False
                      ) -> tuple[Hardware, str]:
    """The device record a plan uses, and a sentence saying what its figures are."""
    from .calibration import calibrated_hardware, calibration_for, is_pure_roofline

    if not use_bound and is_pure_roofline(hw):  # efficiencies the caller set are kept
        calibrated = calibrated_hardware(hw, impl)
        if calibrated is not None:
            return calibrated, ("calibrated expectation: "
                                + calibration_for(hw, impl).summary)  # type: ignore[union-attr]
    if is_pure_roofline(hw):
        why = "asked for" if use_bound else (f"no calibration record for {hw.id} running "
                                             f"{impl.name}")
        return hw, (f"roofline bound ({why}): the most throughput {hw.id} allows; measured "
                    "throughput is lower, so this plan buys the fewest GPUs that could do")
    return hw, f"the efficiencies of the record {hw.id} ({hw.efficiency.source or 'given'})"


def plan_capacity(
    model: ModelLike,
    hardware: HardwareLike,
    workload: Workload | None = None,
    implementation: str | Implementation = "static",
    *,
    target_tokens_per_s: float | None = None,
    tpot_bound_s: float | None = None,
    price_per_gpu_hour: float | None = None,
    parallelism: Parallelism | Literal["search"] | None = None,
    max_gpus_per_replica: int = 8,
    use_bound: bool = False,
) -> CapacityPlan:
    """Layout, batch per replica, memory, throughput, replicas (GPUs) and cost for a target.

    Give `target_tokens_per_s` (total generated tokens/s of the fleet), `tpot_bound_s` (a
    per-token latency bound) or both. Without a throughput target the plan has one replica.

    - layout: `parallelism` (default one GPU per replica), or ``"search"``: every valid
      (tp, pp) up to `max_gpus_per_replica` GPUs per replica; fewest GPUs wins, then lower TPOT.
    - batch: the largest batch 1..max_batch with TPOT <= `tpot_bound_s`; the max batch without
      a bound (`limited_by` says which limit set it).
    - replicas = ceil(target_tokens_per_s / per-replica throughput); gpus = replicas x tp x pp.
    - cost_per_million_tokens = price_per_gpu_hour x gpus per replica / (3600 x per-replica
      throughput) x 1e6, every replica busy; cost_per_million_tokens_at_target charges the
      whole fleet (gpus x price) for the target rate only.

    - basis: where a calibration record exists for (hardware, implementation)
      (`costmodel.calibration`), the plan uses that calibrated expectation, so a fleet is not
      sized on the roofline's optimism; `use_bound=True` plans on the pure roofline instead.
      `basis` says which, and that a figure without a record is a bound.

    Raises ValueError naming the field: non-positive targets, a negative price, a model whose
    weights do not fit the device (``hardware``), a bound that even batch 1 misses
    (``tpot_bound_s``), a layout that cannot shard the model (``tp``/``pp``).
    """
    target = _check_positive("target_tokens_per_s", target_tokens_per_s)
    bound = _check_positive("tpot_bound_s", tpot_bound_s)
    price = _check_positive("price_per_gpu_hour", price_per_gpu_hour, allow_zero=True)
    if target is None and bound is None:
        raise UserError("target: give target_tokens_per_s, tpot_bound_s or both")
    if not isinstance(max_gpus_per_replica, int) or max_gpus_per_replica < 1:
        raise UserError(f"max_gpus_per_replica: must be a whole number >= 1, "
                         f"got {max_gpus_per_replica!r}")
    spec = resolve_model(model)
    hw = get_hardware(hardware)
    impl = get_implementation(implementation)
    hw, basis = planning_hardware(hw, impl, use_bound)
    search = isinstance(parallelism, str)
    if search and parallelism != "search":
        raise UserError(f"parallelism: expected a Parallelism or 'search', got {parallelism!r}")
    if search:
        candidates = candidate_layouts(spec, max_gpus_per_replica)
    else:
        par = get_parallelism(parallelism)  # type: ignore[arg-type]
        check_parallelism(spec, par)
        candidates = [(par, "")]

    # the layouts to evaluate, their batch-1 estimates, and (with a bound) every batch of every
    # layout in one sweep
    runnable = [par for par, why in candidates if not why and (
        par.gpus_per_replica == 1 or (hw.interconnect_GBps_per_direction is not None
                                      and hw.interconnect_latency_us is not None))]
    bases = {(p.tp, p.pp): estimate(spec, hw, _workload(workload, 1), impl, parallelism=p)
             for p in runnable}
    curves = _tpot_curves(spec, hw, impl, workload, bases) if bound is not None else {}

    options: list[LayoutOption] = []
    best = None
    for par, why in candidates:
        if why:
            options.append(LayoutOption(tp=par.tp, pp=par.pp, gpus_per_replica=par.gpus_per_replica,
                                        verdict=why))
            continue
        if par.gpus_per_replica > 1 and (hw.interconnect_GBps_per_direction is None
                                         or hw.interconnect_latency_us is None):
            options.append(LayoutOption(tp=par.tp, pp=par.pp,
                                        gpus_per_replica=par.gpus_per_replica,
                                        verdict=f"invalid: {hw.id} has no interconnect figures"))
            continue
        got = _plan_layout(spec, hw, impl, workload, par, bound, bases[(par.tp, par.pp)],
                           curves.get((par.tp, par.pp)))
        if isinstance(got, str):
            options.append(LayoutOption(tp=par.tp, pp=par.pp,
                                        gpus_per_replica=par.gpus_per_replica, verdict=got))
            continue
        est, batch, limited_by, base = got
        per = est.throughput_tokens_per_s
        replicas = 1 if target is None else max(1, math.ceil(target / per))
        option = LayoutOption(tp=par.tp, pp=par.pp, gpus_per_replica=par.gpus_per_replica,
                              batch=batch, max_batch=base.max_batch, tpot_s=est.tpot_s,
                              throughput_tokens_per_s_per_replica=per, replicas=replicas,
                              gpus=replicas * par.gpus_per_replica, verdict="")
        options.append(option)
        # fewest GPUs; then (without a target, one replica) most tokens/s per GPU; then TPOT
        rank = (option.gpus, -per / par.gpus_per_replica, est.tpot_s)
        if best is None or rank < best[0]:
            best = (rank, par, est, batch, limited_by, base, option)

    if best is None:
        if not search:
            verdict = options[0].verdict
            field = "tpot_bound_s" if verdict.startswith("misses") else "hardware"
            if field == "hardware":
                base = estimate(spec, hw, _workload(workload, 1), impl,
                                parallelism=candidates[0][0])
                raise UserError(
                    f"hardware: {spec.name} does not fit on {hw.id}: weights "
                    f"{base.weights_bytes_per_gpu / 2**30:.2f} GiB per GPU + "
                    f"{(base.memory_bytes_per_gpu - base.weights_bytes_per_gpu) / 2**30:.3f}"
                    f" GiB per sequence exceed the {hw.capacity_bytes() / 2**30:.1f} GiB device "
                    "(minus the reserve)")
            raise UserError(f"tpot_bound_s: {bound * 1e3:.4g} ms per token is below what "
                             f"batch 1 achieves on {hw.id} ({verdict})")
        verdicts = "; ".join(f"tp{o.tp}/pp{o.pp} {o.verdict}" for o in options)
        tried = [o.verdict for o in options if not o.verdict.startswith("invalid")]
        if tried and all(v.startswith("misses") for v in tried):
            raise UserError(f"tpot_bound_s: {bound * 1e3:.4g} ms per token is below what "
                             f"batch 1 achieves with every layout on {hw.id}: {verdicts}")
        field = "hardware" if all(v.startswith("does not fit") for v in tried) else "parallelism"
        raise UserError(f"{field}: no layout with up to {max_gpus_per_replica} GPUs per "
                         f"replica works for {spec.name} on {hw.id}: {verdicts}")
    _, par, est, batch, limited_by, base, chosen = best
    for i, o in enumerate(options):
        if o is chosen:
            options[i] = o.model_copy(update={"verdict": "chosen"})
        elif not o.verdict:
            options[i] = o.model_copy(update={"verdict": _lost(o, chosen)})
    reason = (f"tp={par.tp}, pp={par.pp}: {chosen.gpus} GPUs in {chosen.replicas} replicas of "
              f"{par.gpus_per_replica}, batch {batch} per replica ({limited_by}-limited)")

    per_replica = est.throughput_tokens_per_s
    replicas = chosen.replicas or 1
    gpus_per_replica = par.gpus_per_replica
    gpus = replicas * gpus_per_replica
    cost_per_hour = None if price is None else gpus * price
    cost_per_m = None if price is None else price * gpus_per_replica / (3600 * per_replica) * 1e6
    cost_at_target = (None if price is None or target is None
                      else cost_per_hour / (3600 * target) * 1e6)
    return CapacityPlan(
        model=spec.name, hardware=hw.id, implementation=impl.name, basis=basis,
        prompt_tokens=est.prompt_tokens, generated_tokens=est.generated_tokens,
        target_tokens_per_s=target, tpot_bound_s=bound, price_per_gpu_hour=price,
        batch=batch, limited_by=limited_by,
        ttft_s=est.ttft_s, tpot_s=est.tpot_s, request_time_s=est.request_time_s,
        memory_bytes_per_replica=est.memory_bytes_total,
        throughput_tokens_per_s_per_replica=per_replica,
        replicas=replicas, gpus_per_replica=gpus_per_replica, gpus=gpus,
        throughput_tokens_per_s_total=replicas * per_replica,
        cost_per_hour=cost_per_hour, cost_per_million_tokens=cost_per_m,
        cost_per_million_tokens_at_target=cost_at_target,
        max_batch=base.max_batch, compute_bound_batch=est.compute_bound_batch,
        kv_overtakes_weights_context=est.kv_overtakes_weights_context,
        tp=par.tp, pp=par.pp, memory_bytes_per_gpu=est.memory_bytes_per_gpu,
        layouts=options, reason=reason,
    )


def _lost(o: LayoutOption, chosen: LayoutOption) -> str:
    if o.gpus is not None and chosen.gpus is not None and o.gpus > chosen.gpus:
        return f"needs {o.gpus} GPUs ({o.replicas} x {o.gpus_per_replica}) > {chosen.gpus}"
    return (f"same {o.gpus} GPUs but less throughput per GPU or a higher TPOT "
            f"({(o.tpot_s or 0) * 1e3:.3g} ms)")
