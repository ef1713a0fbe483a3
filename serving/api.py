"""Python API: `simulate` one load, `max_rate` per replica under SLOs, `replicas_for_rate`.

    >>> from serving import simulate, max_rate, SLO
    >>> r = simulate("vanilla_410", "h100-sxm-80gb", rate=10, prompt_tokens=2048,
    ...              generated_tokens=128, duration_s=60, seed=0)
    >>> r.ttft_s.p95, r.tpot_s.p95, r.sustainable
    >>> max_rate("vanilla_410", "h100-sxm-80gb", prompt_tokens=2048, generated_tokens=128,
    ...          slo=SLO(ttft_s=1.0, tpot_s=0.05, percentile=95)).max_rate_per_s

docs/serving.md describes the model, the policies and the planning search.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel

from costmodel.api import ModelLike, resolve_model
from costmodel.errors import UserError
from costmodel.hardware import Hardware, get_hardware
from costmodel.implementation import Implementation, get_implementation

from .predictor import build_predictor
from .requests import Distribution, Trace, check_rate, parse_distribution, poisson_trace
from .results import (
    SLO,
    Percentiles,
    SimulationResult,
    _series,
    percentile_met,
    queue_growth,
    time_average,
)
from .scheduler import SchedulerConfig
from .simulator import Simulator

Progress = Callable[[int, int], None]


def _dist(x: Distribution | str | int, field: str) -> Distribution:
    return x if isinstance(x, Distribution) else parse_distribution(x, field)


def simulate(
    model: ModelLike,
    hardware: Hardware | str,
    rate: float | None = None,
    prompt_tokens: Distribution | str | int = 2048,
    generated_tokens: Distribution | str | int = 128,
    duration_s: float = 60.0,
    seed: int = 0,
    *,
    trace: Trace | None = None,
    scheduler: SchedulerConfig | None = None,
    slo: SLO | None = None,
    implementation: str | Implementation = "static",
    dtype: str | None = None,
    progress: Progress | None = None,
) -> SimulationResult:
    """Simulate a continuous-batching server under Poisson load at `rate` requests/s for
    `duration_s` seconds of arrivals (or under a given `trace`); every arrived request is
    served to completion. Same seed, same result."""
    if trace is None:
        if rate is None:
            raise UserError("rate: give a request rate (requests/s) or a trace")
        trace = poisson_trace(rate, duration_s, _dist(prompt_tokens, "prompt_tokens"),
                              _dist(generated_tokens, "generated_tokens"), seed)
    scheduler = scheduler or SchedulerConfig()
    slo = slo or SLO()
    spec = resolve_model(model)
    hw = get_hardware(hardware)
    impl = get_implementation(implementation, dtype)  # type: ignore[arg-type]
    pred = build_predictor(spec, hw, impl)
    t0 = time.perf_counter()
    raw = Simulator(pred, trace, scheduler, progress).run()
    wall = time.perf_counter() - t0

    arr = trace.arrival_s
    ok = ~raw.rejected
    ttft = (raw.first_token_s - arr)[ok]
    e2e = (raw.finish_s - arr)[ok]
    G = trace.generated_tokens[ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(G > 1, (raw.finish_s[ok] - raw.first_token_s[ok]) / (G - 1), np.nan)
    t_first = float(arr[0])
    t_last = float(np.nanmax(raw.finish_s)) if ok.any() else t_first
    makespan = max(t_last - t_first, 1e-12)
    window = float(arr[-1] - arr[0])
    offered = (len(trace) - 1) / window if window > 0 else math.inf
    gen_tokens = float(G.sum())
    good = (ttft <= slo.ttft_s) & ~(tpot > slo.tpot_s)
    st = np.asarray(raw.samples_t)
    wq = np.asarray(raw.samples_waiting)
    rn = np.asarray(raw.samples_running)
    half_arrivals = int((arr >= (arr[0] + arr[-1]) / 2).sum())
    growing, growth = queue_growth(st, wq, t_first, float(arr[-1]), half_arrivals)
    met = bool(ok.all() and percentile_met(ttft, slo.ttft_s, slo.percentile)
               and percentile_met(tpot, slo.tpot_s, slo.percentile) and not growing)
    rejected = int(raw.rejected.sum())
    if rejected:
        verdict = (f"{rejected} requests can never fit the KV cache pool "
                   f"({raw.kv_capacity_bytes / 2**30:.2f} GiB); they were refused")
    elif growing:
        verdict = (f"not sustainable: the waiting queue grew by {growth:.0f} requests over the "
                   f"second half of the arrivals; the server completes "
                   f"{(ok.sum()) / makespan:.3g} requests/s against {offered:.3g} offered")
    else:
        verdict = "sustainable: the waiting queue does not grow"
    return SimulationResult(
        model=spec.name, kind=spec.kind, hardware=hw.id, implementation=impl.name,
        scheduler=scheduler, trace=trace.source, requests=len(trace), completed=int(ok.sum()),
        rejected=rejected, preemptions=int(raw.preemptions.sum()),
        offered_rate_per_s=offered, arrival_window_s=window, makespan_s=makespan,
        iterations=raw.iterations, ttft_s=Percentiles.of(ttft), tpot_s=Percentiles.of(tpot),
        e2e_s=Percentiles.of(e2e), throughput_tokens_per_s=gen_tokens / makespan,
        throughput_requests_per_s=float(ok.sum()) / makespan, slo=slo,
        goodput_requests_per_s=float(good.sum()) / makespan, slo_met=met,
        ttft_at_slo_s=_pct(ttft, slo.percentile), tpot_at_slo_s=_pct(tpot, slo.percentile),
        sustainable=not growing and not rejected, verdict=verdict,
        mean_in_system=time_average(st, wq + rn, t_last),
        kv_capacity_bytes=raw.kv_capacity_bytes,
        series=_series(raw.samples_t, raw.samples_waiting, raw.samples_running, raw.samples_kv),
        wall_s=wall, warnings=list(trace.warnings),
    )


def _pct(x: np.ndarray, p: float) -> float:
    x = x[np.isfinite(x)]
    return float(np.percentile(x, p)) if x.size else math.nan


# --- planning -----------------------------------------------------------------------------------

class RatePoint(BaseModel, frozen=True):
    rate_per_s: float
    ttft_at_slo_s: float  # at the SLO's percentile
    tpot_at_slo_s: float
    ttft_s: Percentiles
    tpot_s: Percentiles
    sustainable: bool
    slo_met: bool


class MaxRate(BaseModel, frozen=True):
    """The highest Poisson rate per replica whose run meets the SLO (docs/serving.md 7)."""

    model: str
    hardware: str
    prompt_tokens: str
    generated_tokens: str
    slo: SLO
    max_rate_per_s: float  # 0 when no rate meets the SLO
    met: bool
    answer: str
    requests_per_run: int
    probes: list[RatePoint]

    def replicas_for(self, target_rate_per_s: float) -> int | None:
        """Replicas (each at `max_rate_per_s`) that serve `target_rate_per_s`; None if none do."""
        check_rate(target_rate_per_s, "target_rate")
        if not self.met:
            return None
        return max(1, math.ceil(target_rate_per_s / self.max_rate_per_s - 1e-9))


def max_rate(
    model: ModelLike,
    hardware: Hardware | str,
    prompt_tokens: Distribution | str | int = 2048,
    generated_tokens: Distribution | str | int = 128,
    slo: SLO | None = None,
    *,
    requests: int = 1000,
    seed: int = 0,
    rel_tol: float = 0.02,
    scheduler: SchedulerConfig | None = None,
    implementation: str | Implementation = "static",
    dtype: str | None = None,
    progress: Progress | None = None,
) -> MaxRate:
    """Bisection over the request rate (same seeded requests at every rate): the highest rate
    at which the SLO percentiles hold and the queue does not grow. When even a nearly idle
    server misses the SLO the answer says which objective fails and by how much."""
    slo = slo or SLO()
    if not 10 <= requests <= 200_000:
        raise UserError(f"requests: must be 10..200000 per probe, got {requests}")
    p_d, g_d = _dist(prompt_tokens, "prompt_tokens"), _dist(generated_tokens, "generated_tokens")
    probes: list[RatePoint] = []

    def run(rate: float) -> SimulationResult:
        r = simulate(model, hardware, rate, p_d, g_d, duration_s=requests / rate, seed=seed,
                     scheduler=scheduler, slo=slo, implementation=implementation, dtype=dtype)
        probes.append(RatePoint(rate_per_s=rate, ttft_at_slo_s=r.ttft_at_slo_s,
                                tpot_at_slo_s=r.tpot_at_slo_s, ttft_s=r.ttft_s, tpot_s=r.tpot_s,
                                sustainable=r.sustainable, slo_met=r.slo_met))
        if progress:
            progress(len(probes), 0)
        return r

    spec = resolve_model(model)
    hw = get_hardware(hardware)
    # a nearly idle server: one request's latency sets the scale of the rates
    solo = simulate(model, hardware, trace=Trace(np.array([0.0]),
                                                  np.array([int(p_d.mean)]),
                                                  np.array([int(g_d.mean)]), source="one"),
                    scheduler=scheduler, slo=slo, implementation=implementation, dtype=dtype)
    e2e = max(solo.e2e_s.p50, 1e-6)
    lo = 0.05 / e2e  # about 5% of one request in flight on average
    common = dict(model=spec.name, hardware=hw.id, prompt_tokens=str(p_d),
                  generated_tokens=str(g_d), slo=slo, requests_per_run=requests)
    first = run(lo)
    if not first.slo_met:
        p = slo.percentile
        ttft, tpot = first.ttft_at_slo_s, first.tpot_at_slo_s
        why = []
        if not math.isnan(ttft) and ttft > slo.ttft_s:
            why.append(f"TTFT {ttft:.3g} s > {slo.ttft_s:g} s")
        if not math.isnan(tpot) and tpot > slo.tpot_s:
            why.append(f"TPOT {tpot * 1e3:.3g} ms > {slo.tpot_s * 1e3:g} ms")
        if first.rejected:
            why.append(first.verdict)
        return MaxRate(max_rate_per_s=0.0, met=False, probes=probes, answer=(
            f"no rate meets the SLO: even at {lo:.3g} requests/s (nearly idle) the "
            f"p{p:g} {' and '.join(why) or 'objective fails'}"), **common)
    # grow until a rate fails, then bisect
    hi = lo
    ok_rate = lo
    while True:
        hi *= 2
        if run(hi).slo_met:
            ok_rate = hi
            if hi > 1e7:
                break
        else:
            break
    lo_b = ok_rate
    while hi / lo_b - 1 > rel_tol:
        mid = math.sqrt(lo_b * hi)
        if run(mid).slo_met:
            lo_b = mid
        else:
            hi = mid
    return MaxRate(max_rate_per_s=lo_b, met=True, probes=probes, answer=(
        f"{lo_b:.3g} requests/s per replica meet p{slo.percentile:g} TTFT <= {slo.ttft_s:g} s "
        f"and TPOT <= {slo.tpot_s * 1e3:g} ms ({hi:.3g} does not)"), **common)


def replicas_for_rate(result: MaxRate, target_rate_per_s: float) -> int | None:
    """Replicas needed for `target_rate_per_s` at `result`'s max rate per replica."""
    return result.replicas_for(target_rate_per_s)
