"""blockroof serving simulator: continuous batching under load, SLO-based capacity planning.

Vidur-style split (docs/serving.md): `requests` (arrivals and traces), `scheduler` (policy and
KV-memory limits), `predictor` (per-forward time from the cost model's compiled formulas),
`simulator` (the event loop), `results` (typed outputs), `api` (`simulate`, `max_rate`).
Imports `costmodel`; `costmodel` never imports this package.
"""

from .api import MaxRate, RatePoint, max_rate, replicas_for_rate, simulate
from .requests import Distribution, Trace, parse_distribution, poisson_trace, read_trace
from .results import SLO, Percentiles, SimulationResult, TimeSeries
from .scheduler import SchedulerConfig

__all__ = [
    "SLO", "Distribution", "MaxRate", "Percentiles", "RatePoint", "SchedulerConfig",
    "SimulationResult", "TimeSeries", "Trace", "max_rate", "parse_distribution",
    "poisson_trace", "read_trace", "replicas_for_rate", "simulate",
]
