"""Cost-model speed: formula build cost, one `estimate()` after warm-up, and sweep points/s.

Run: python benchmarks/sweep_speed.py [--points N]
Last line: `sweep points/s: N` (target >= 1,000,000 on the project's 2-core machine).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from costmodel import Workload, estimate, sweep
from costmodel.metrics import formulas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000, help="design points per sweep")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    models = ["vanilla_410", "block_main_b4_1.2b"]

    os.environ["BLOCKROOF_CACHE_DIR"] = "off"  # time the build itself, not the disk cache
    formulas.cache_clear()
    t0 = time.perf_counter()
    for m in models:
        for impl in ("static", "hf-legacy"):
            estimate(m, "h100-sxm-80gb", Workload(), impl)
    build_s = time.perf_counter() - t0
    print(f"formula build + compile, 2 models x 2 profiles: {build_s:.2f} s "
          f"({build_s / 4:.2f} s per structure)")

    w = Workload(batch=64, prompt_tokens=2048, generated_tokens=128)
    times = []
    for _ in range(200):
        t = time.perf_counter()
        estimate("block_main_b4_1.2b", "h100-sxm-80gb", w)
        times.append(time.perf_counter() - t)
    print(f"estimate() after warm-up: median {np.median(times) * 1e3:.2f} ms, "
          f"p90 {np.percentile(times, 90) * 1e3:.2f} ms (block_main_b4_1.2b, static)")

    # grid: 2 models x 100 batches x 100 prompts x (points / 20,000) generated lengths
    n_gen = max(1, args.points // (2 * 100 * 100))
    grid = dict(batch=np.arange(1, 101), prompt_tokens=np.arange(1, 101) * 64,
                generated_tokens=np.arange(1, n_gen + 1) * 32)
    sweep(models, "h100-sxm-80gb", metrics=["throughput_tokens_per_s"], **grid)  # compile
    rates = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        df = sweep(models, "h100-sxm-80gb", metrics=["throughput_tokens_per_s"], **grid)
        rates.append(len(df) / (time.perf_counter() - t))
    print(f"sweep of {len(df):,} design points (throughput, 2 models): "
          f"median {np.median(rates):,.0f} points/s over {args.repeats} runs "
          f"(min {min(rates):,.0f}, max {max(rates):,.0f})")
    print(f"sweep points/s: {np.median(rates):.0f}")


if __name__ == "__main__":
    main()
