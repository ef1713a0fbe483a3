"""Capacity planning: how many GPUs, at which batch, for a target throughput or latency.

One replica is one device holding the whole model (no tensor or pipeline parallelism); replicas
serve independent requests, so the fleet's throughput is replicas x the replica's throughput.

    >>> from costmodel.capacity import plan_capacity
    >>> plan = plan_capacity("vanilla_410", "h100-sxm-80gb", Workload(prompt_tokens=2048,
    ...                      generated_tokens=128), target_tokens_per_s=1e6, tpot_bound_s=0.02)
    >>> plan.batch, plan.replicas, plan.gpus

The batch per replica is the largest batch that fits the device memory (the max batch, as the
paper measures throughput, SPEC.md 5.1) or, given a per-token latency bound, the largest batch
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

from .api import HardwareLike, ModelLike, estimate, resolve_model, sweep
from .errors import UserError
from .hardware import get_hardware
from .implementation import Implementation, get_implementation
from .workload import Workload

CURVE_METRICS: tuple[str, ...] = (
    "tpot_s", "ttft_s", "throughput_tokens_per_s", "memory_bytes_total",
)


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
) -> pd.DataFrame:
    """TPOT, TTFT, throughput and total memory for every batch 1..max_batch (one sweep call).

    Columns: batch, tpot_s, ttft_s, throughput_tokens_per_s, memory_bytes_total. `max_batch`
    defaults to the model's max batch on the device; the frame is empty when nothing fits.
    """
    wl = _workload(workload, 1)
    if max_batch is None:
        max_batch = estimate(model, hardware, wl, implementation).max_batch
    if max_batch < 1:
        return pd.DataFrame(columns=["batch", *CURVE_METRICS])
    df = sweep(model, hardware, batch=np.arange(1, int(max_batch) + 1),
               prompt_tokens=wl.prompt_tokens, generated_tokens=wl.generated_tokens,
               implementation=implementation, metrics=CURVE_METRICS,
               memory_reserve_bytes=wl.memory_reserve_bytes)
    out = df[["batch", *CURVE_METRICS]].copy()
    out["batch"] = out["batch"].astype(np.int64)
    return out.reset_index(drop=True)


def plan_capacity(
    model: ModelLike,
    hardware: HardwareLike,
    workload: Workload | None = None,
    implementation: str | Implementation = "static",
    *,
    target_tokens_per_s: float | None = None,
    tpot_bound_s: float | None = None,
    price_per_gpu_hour: float | None = None,
) -> CapacityPlan:
    """Batch per replica, memory, throughput, replicas (GPUs) and cost for a serving target.

    Give `target_tokens_per_s` (total generated tokens/s of the fleet), `tpot_bound_s` (a
    per-token latency bound) or both. Without a throughput target the plan has one replica.

    - batch: the largest batch 1..max_batch with TPOT <= `tpot_bound_s`; the max batch without
      a bound (`limited_by` says which limit set it).
    - replicas = ceil(target_tokens_per_s / per-replica throughput); gpus = replicas (one GPU
      per replica).
    - cost_per_million_tokens = price_per_gpu_hour / (3600 x per-replica throughput) x 1e6,
      every replica busy; cost_per_million_tokens_at_target charges the whole fleet
      (gpus x price) for the target rate only.

    Raises ValueError naming the field: non-positive targets, a negative price, a model whose
    weights do not fit the device (``hardware``), a bound that even batch 1 misses
    (``tpot_bound_s``).
    """
    target = _check_positive("target_tokens_per_s", target_tokens_per_s)
    bound = _check_positive("tpot_bound_s", tpot_bound_s)
    price = _check_positive("price_per_gpu_hour", price_per_gpu_hour, allow_zero=True)
    if target is None and bound is None:
        raise UserError("target: give target_tokens_per_s, tpot_bound_s or both")
    spec = resolve_model(model)
    hw = get_hardware(hardware)
    impl = get_implementation(implementation)

    base = estimate(spec, hw, _workload(workload, 1), impl)
    if base.max_batch < 1:
        raise UserError(
            f"hardware: {spec.name} does not fit on {hw.id}: weights "
            f"{base.weights_bytes / 2**30:.2f} GiB + {base.memory_bytes_per_sample / 2**30:.3f}"
            " GiB per sequence exceed the "
            f"{hw.capacity_bytes() / 2**30:.1f} GiB device (minus the reserve)"
        )
    limited_by: Literal["memory", "latency"] = "memory"
    batch = base.max_batch
    if bound is not None:
        curve = batch_curve(spec, hw, workload, impl, max_batch=base.max_batch)
        ok = curve["batch"][curve["tpot_s"].to_numpy() <= bound]
        if ok.empty:
            raise UserError(
                f"tpot_bound_s: {bound * 1e3:.4g} ms per token is below what batch 1 achieves "
                f"({base.tpot_s * 1e3:.4g} ms) on {hw.id}"
            )
        batch = int(ok.max())
        if batch < base.max_batch:
            limited_by = "latency"

    est = base if batch == 1 else estimate(spec, hw, _workload(workload, batch), impl)
    per_replica = est.throughput_tokens_per_s
    replicas = 1 if target is None else max(1, math.ceil(target / per_replica))
    gpus_per_replica = 1
    gpus = replicas * gpus_per_replica
    cost_per_hour = None if price is None else gpus * price
    cost_per_m = None if price is None else price * gpus_per_replica / (3600 * per_replica) * 1e6
    cost_at_target = (None if price is None or target is None
                      else cost_per_hour / (3600 * target) * 1e6)
    return CapacityPlan(
        model=spec.name, hardware=hw.id, implementation=impl.name,
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
    )
