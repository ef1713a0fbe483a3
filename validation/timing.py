"""Timing a callable on CPU or CUDA: warm-up, repeats, median and spread (docs/engineering-notes.md, PyTorch
measurement; docs/model.md 6).

- CUDA: an event pair around each call, then ``torch.cuda.synchronize()``; the elapsed time of
  the events is the GPU time of the region (the paper's protocol, docs/model.md 6.3).
- CPU: ``time.perf_counter`` around each call; the thread count is whatever
  `torch.set_num_threads` set (the caller sets it explicitly and records it).

Summary statistics: median (the reported value), interquartile range (the spread), mean and
standard deviation (what the paper reports, docs/model.md 6.4), minimum.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from costmodel.errors import UserError


@dataclass(frozen=True)
class Timing:
    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def mean_s(self) -> float:
        return statistics.fmean(self.times_s)

    @property
    def std_s(self) -> float:
        return statistics.stdev(self.times_s) if len(self.times_s) > 1 else 0.0

    @property
    def iqr_s(self) -> float:
        if len(self.times_s) < 2:
            return 0.0
        q = statistics.quantiles(self.times_s, n=4, method="inclusive")
        return q[2] - q[0]

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    def summary(self) -> dict[str, Any]:
        return {"measured_s": self.median_s, "spread_s": self.iqr_s, "mean_s": self.mean_s,
                "std_s": self.std_s, "min_s": self.min_s, "repeats": len(self.times_s),
                "times_s": list(self.times_s)}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], device: str, warmup: int = 1, repeats: int = 5,
              before: Callable[[], Any] | None = None,
              after: Callable[[], Any] | None = None) -> Timing:
    """Time `fn` `repeats` times after `warmup` untimed calls.

    `before`/`after` run outside the timed region of every call (e.g. restoring a cache).
    """
    if repeats < 1:
        raise UserError(f"repeats: must be >= 1, got {repeats}")
    for _ in range(warmup):
        if before:
            before()
        fn()
        if after:
            after()
    synchronize(device)
    times = []
    cuda = device.startswith("cuda")
    for _ in range(repeats):
        if before:
            before()
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        if after:
            after()
    return Timing(tuple(times))
