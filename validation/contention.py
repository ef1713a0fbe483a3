"""Contention guard for timing on a shared CPU (the project's 2-core machines run other
sessions' tests beside ours; docs/engineering-notes.md).

Other processes slow a CPU measurement in bursts of seconds to minutes, often long enough to
hit every repeat of one point, so a median alone does not remove them. `ContentionGuard`
times a small fixed workload (a 384^3 fp32 matmul, ~1 ms) against the best time it has seen
(from start-up on):

- before a point, `wait_quiet` waits (up to `max_wait_s`) until the ratio is below
  `threshold`;
- after a point, `ratio` tells whether the machine was contended while it ran; the runner
  then measures the point again (at most `retries` times) and keeps the attempt with the
  lowest median, recording every attempt.

On CUDA devices the guard is off (the GPU is the measured device, and CUDA events time it),
and so it is for any device name other than ``"cpu"`` (``"off"``).
"""

from __future__ import annotations

import statistics
import time

import torch


class ContentionGuard:
    def __init__(self, device: str, threshold: float = 1.3, max_wait_s: float = 60.0,
                 retries: int = 2) -> None:
        self.enabled = device == "cpu"
        self.threshold, self.max_wait_s, self.retries = threshold, max_wait_s, retries
        self.baseline_s = 0.0
        if self.enabled:
            g = torch.Generator().manual_seed(0)
            self._a = torch.randn(384, 384, generator=g)
            self._b = torch.randn(384, 384, generator=g)
            for _ in range(20):
                self._a @ self._b
            self.baseline_s = min(self._sample() for _ in range(30))

    def _sample(self) -> float:
        t = time.perf_counter()
        self._a @ self._b
        return time.perf_counter() - t

    def ratio(self) -> float:
        """Median of 7 probe times over the start-up best (1.0 = as quiet as at start-up)."""
        if not self.enabled:
            return 1.0
        samples = [self._sample() for _ in range(7)]
        self.baseline_s = min(self.baseline_s, *samples)  # the quietest time seen so far
        return statistics.median(samples) / self.baseline_s

    def wait_quiet(self) -> float:
        """Wait until the ratio is below the threshold or `max_wait_s` passed; the last ratio."""
        r = self.ratio()
        deadline = time.monotonic() + self.max_wait_s
        while r > self.threshold and time.monotonic() < deadline:
            time.sleep(2.0)
            r = self.ratio()
        return r
