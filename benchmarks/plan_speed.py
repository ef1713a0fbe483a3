"""Speed of a capacity-planning search over (tp, pp, batch) candidates for one model.

    python benchmarks/plan_speed.py [--model vanilla_70] [--hardware h200-sxm-141gb]

`plan_capacity(..., parallelism="search", tpot_bound_s=...)` tries every layout tp x pp <=
`--max-gpus` (powers of two) and, per layout, every batch 1..its max batch: one `sweep` over
the whole space (docs/performance.md 3). A candidate is one (tp, pp, batch) that fits the
memory. The first plan builds and compiles the formulas of each layout's structure and is
reported apart; the timed plans are warm. Prints the load average. Last line:
`plan candidates/s: N` (candidates / median warm plan time).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from costmodel import Workload
from costmodel.capacity import plan_capacity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vanilla_70")
    ap.add_argument("--hardware", default="h200-sxm-141gb")
    ap.add_argument("--max-gpus", type=int, default=8)
    ap.add_argument("--tpot-ms", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    wl = Workload(prompt_tokens=128, generated_tokens=128)
    kw = dict(target_tokens_per_s=1e7, tpot_bound_s=args.tpot_ms * 1e-3,
              parallelism="search", max_gpus_per_replica=args.max_gpus)
    t0 = time.perf_counter()
    plan = plan_capacity(args.model, args.hardware, wl, **kw)
    print(f"first plan (formula builds): {time.perf_counter() - t0:.1f} s")
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        plan = plan_capacity(args.model, args.hardware, wl, **kw)
        times.append(time.perf_counter() - t)
    layouts = [o for o in plan.layouts if o.max_batch]
    candidates = sum(o.max_batch for o in layouts)
    load = os.getloadavg()
    med = float(np.median(times))
    print(f"{args.model} on {args.hardware}, prompt 128, generate 128, TPOT <= {args.tpot_ms} ms:"
          f" {len(plan.layouts)} layouts ({len(layouts)} fit), {candidates:,} (tp, pp, batch) "
          f"candidates; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
          f"{os.cpu_count()} CPUs")
    print(f"chosen: {plan.reason}")
    print(f"warm plan: median {med:.3f} s over {args.repeats} (min {min(times):.3f} s)")
    print(f"plan candidates/s: {candidates / med:.0f}")


if __name__ == "__main__":
    main()
