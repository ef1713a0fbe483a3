"""Sweep speed beside a fixed numpy baseline over the same number of points, in one run.

    python benchmarks/sweep_speed.py [--points N] [--repeats R]

The sweep: `costmodel.sweep` of 2 models (vanilla_410, block_main_b4_1.2b) on h100-sxm-80gb
over 100 batches x 100 prompt lengths x N / 20,000 generated lengths, metric
throughput_tokens_per_s, as a DataFrame (the whole public call). The baseline: a fixed
20-operation elementwise float64 numpy expression (`_baseline`: 10 multiplications, 5
additions, 3 subtractions, 2 divisions) over N points of 3 input arrays. Each repeat times one
of each, alternating, so machine load hits them alike; medians are compared. Prints the load
average. Last line: `sweep / numpy baseline: R`, R = baseline time / sweep time (1 would be the
sweep as fast as the 20-op expression; the target, issue 18, is R >= 0.35). See
docs/performance.md 2.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from costmodel import sweep


def _baseline(a, b, c):
    # 20 elementwise operations
    return ((a * b + c) * a - b / c + c * a * b - (b - c) * (a + b) + a * b * c / a
            + b * b - c * a + a * b * c - b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000, help="design points per sweep")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    models = ["vanilla_410", "block_main_b4_1.2b"]
    n_gen = max(1, args.points // (2 * 100 * 100))
    grid = dict(batch=np.arange(1, 101), prompt_tokens=np.arange(1, 101) * 64,
                generated_tokens=np.arange(1, n_gen + 1) * 32)
    t0 = time.perf_counter()
    df = sweep(models, "h100-sxm-80gb", metrics=["throughput_tokens_per_s"], **grid)
    print(f"first sweep (formula build, split and compile): {time.perf_counter() - t0:.2f} s")
    n = len(df)
    rng = np.random.default_rng(0)
    a, b, c = (rng.uniform(1, 2, n) for _ in range(3))
    t_sweep, t_base = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        sweep(models, "h100-sxm-80gb", metrics=["throughput_tokens_per_s"], **grid)
        t_sweep.append(time.perf_counter() - t)
        t = time.perf_counter()
        _baseline(a, b, c)
        t_base.append(time.perf_counter() - t)
    s, base = np.median(t_sweep), np.median(t_base)
    load = os.getloadavg()
    print(f"{n:,} design points, {args.repeats} repeats; load average {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"sweep: median {s * 1e3:.1f} ms ({n / s:,.0f} points/s)")
    print(f"20-op numpy baseline: median {base * 1e3:.1f} ms ({n / base:,.0f} points/s)")
    print(f"sweep / numpy baseline: {base / s:.3f}")


if __name__ == "__main__":
    main()
