"""Latency of one warm `estimate()` call, beside a fixed scalar baseline timed in the same run.

    python benchmarks/estimate_latency.py [--calls 2000]

The baseline is a fixed 20-operation float64 expression (`_baseline`: 10 multiplications, 5
additions, 3 subtractions, 2 divisions) evaluated on numpy float64 scalars, the cost of a tiny
numpy-scalar formula. Both are timed interleaved, call by call, so machine load hits them alike.
Prints the load average (os.getloadavg) with the figures; the target (issue 18) is a median
under 0.5 ms on an idle machine. Last line: `estimate / 20-op numpy scalar baseline: R` (ratio
of the medians). docs/performance.md 1.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from costmodel import Workload, estimate


def _baseline(a, b, c, d):
    # 20 operations on float64 scalars
    return ((a * b + c) * d - a / b + c * d * a - (b - c) * (d + a) + a * b * c / d
            + b * b - c * a + d * b * c - a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--model", default="block_main_b4_1.2b")
    args = ap.parse_args()
    w = Workload(batch=64, prompt_tokens=2048, generated_tokens=128)
    x = [np.float64(v) for v in (1.5, 2.25, 3.125, 4.0625)]
    for _ in range(20):
        estimate(args.model, "h100-sxm-80gb", w)
        _baseline(*x)
    est, base = [], []
    for _ in range(args.calls):
        t = time.perf_counter()
        estimate(args.model, "h100-sxm-80gb", w)
        est.append(time.perf_counter() - t)
        t = time.perf_counter()
        _baseline(*x)
        base.append(time.perf_counter() - t)
    n_ops = len(estimate(args.model, "h100-sxm-80gb", w).ops)
    load = os.getloadavg()
    print(f"{args.model} on h100-sxm-80gb, static, batch 64 ({n_ops} op rows), {args.calls} calls;"
          f" load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"20-op numpy scalar baseline median: {np.median(base) * 1e6:.2f} us")
    print(f"estimate() p90: {np.percentile(est, 90) * 1e3:.3f} ms")
    print(f"estimate() median: {np.median(est) * 1e3:.3f} ms")
    print(f"estimate / 20-op numpy scalar baseline: {np.median(est) / np.median(base):.1f}")


if __name__ == "__main__":
    main()
