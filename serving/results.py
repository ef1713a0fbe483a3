"""Typed results of a simulation (docs/serving.md 6).

Per request: TTFT = first token - arrival; TPOT = (finish - first token) / (G - 1) (requests
with G = 1 have none); end-to-end latency = finish - arrival. Percentiles are over completed
requests. Throughput counts generated tokens of completed requests over the makespan (first
arrival to last finish). Goodput (DistServe's definition) counts only requests that meet both
SLOs themselves. `sustainable` is False when the waiting queue keeps growing over the second
half of the arrival window (a least-squares trend of more than max(5, 10% of that half's
arrivals) requests), the sign that the rate exceeds what the server completes.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import BaseModel, Field

from .scheduler import SchedulerConfig

PERCENTILES = (50, 90, 95, 99)


class SLO(BaseModel, frozen=True, extra="forbid"):
    """Service-level objectives: the `percentile` of TTFT and of TPOT must stay within these."""

    ttft_s: Annotated[float, Field(gt=0)] = 1.0
    tpot_s: Annotated[float, Field(gt=0)] = 0.05
    percentile: Annotated[float, Field(gt=0, le=100)] = 95.0


class Percentiles(BaseModel, frozen=True):
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float

    @classmethod
    def of(cls, x: np.ndarray) -> Percentiles:
        x = x[np.isfinite(x)]
        if x.size == 0:
            return cls(mean=math.nan, p50=math.nan, p90=math.nan, p95=math.nan, p99=math.nan)
        q = np.percentile(x, PERCENTILES)
        return cls(mean=float(x.mean()), **{f"p{p}": float(v) for p, v in zip(PERCENTILES, q,
                                                                                strict=True)})


class TimeSeries(BaseModel, frozen=True):
    """Samples at scheduling events (at most `limit` kept, evenly thinned)."""

    t_s: list[float]
    waiting: list[int]
    running: list[int]
    kv_utilization: list[float]


class SimulationResult(BaseModel, frozen=True):
    model: str
    kind: str
    hardware: str
    implementation: str
    scheduler: SchedulerConfig
    trace: str
    requests: int
    completed: int
    rejected: int
    preemptions: int
    offered_rate_per_s: float
    arrival_window_s: float
    makespan_s: float
    iterations: int
    ttft_s: Percentiles
    tpot_s: Percentiles
    e2e_s: Percentiles
    throughput_tokens_per_s: float
    throughput_requests_per_s: float
    slo: SLO
    goodput_requests_per_s: float
    slo_met: bool
    ttft_at_slo_s: float  # TTFT at the SLO's percentile
    tpot_at_slo_s: float
    sustainable: bool
    verdict: str
    mean_in_system: float
    kv_capacity_bytes: float
    series: TimeSeries
    wall_s: float
    warnings: list[str] = Field(default_factory=list)

    def percentile(self, metric: str, p: float) -> float:
        """`metric` ("ttft_s", "tpot_s", "e2e_s") at percentile p (50, 90, 95 or 99)."""
        return getattr(getattr(self, metric), f"p{int(p)}")


def _series(t, waiting, running, kv, limit: int = 2000) -> TimeSeries:
    n = len(t)
    idx = np.unique(np.linspace(0, n - 1, min(n, limit)).astype(int)) if n else []
    return TimeSeries(t_s=[float(t[i]) for i in idx], waiting=[int(waiting[i]) for i in idx],
                      running=[int(running[i]) for i in idx],
                      kv_utilization=[float(kv[i]) for i in idx])


def time_average(t: np.ndarray, y: np.ndarray, t_end: float) -> float:
    """Time average of a step function sampled at t (value held until the next sample)."""
    if len(t) == 0 or t_end <= t[0]:
        return 0.0
    dt = np.diff(np.append(t, t_end))
    return float((y * dt).sum() / (t_end - t[0]))


def queue_growth(t: np.ndarray, waiting: np.ndarray, t0: float, t1: float,
                 arrivals_in_half: int) -> tuple[bool, float]:
    """(growing, trend in requests) of the waiting queue over the second half of [t0, t1]."""
    mid = (t0 + t1) / 2
    sel = (t >= mid) & (t <= t1)
    if sel.sum() < 3 or t1 <= mid:
        return False, 0.0
    slope = float(np.polyfit(t[sel], waiting[sel].astype(float), 1)[0])
    growth = slope * (t1 - mid)
    return growth > max(5.0, 0.1 * arrivals_in_half), growth


def percentile_met(x: np.ndarray, limit: float, p: float) -> bool:
    """p-th percentile of the finite values within `limit` (vacuous when there are none)."""
    x = x[np.isfinite(x)]
    return x.size == 0 or float(np.percentile(x, p)) <= limit
