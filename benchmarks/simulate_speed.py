"""Serving-simulator speed: simulated requests per wall second and simulated time / wall time.

Run: python benchmarks/simulate_speed.py [--requests N]

Scenarios, each a 10,000-request seeded Poisson trace near (below) the server's saturation:
- ``cpu``: this CPU as the calibrated record describes it (validation/results/cpu), vanilla_70
  and block_main_b4_19 in fp32, prompt 64 / generated 32 - the load `blockroof validate
  serve` measures;
- ``h100``: vanilla_410 and block_main_b4_1.2b on an H100, prompt 2048 / generated 128 (a
  fast device: sub-millisecond iterations, so far less simulated time per event).

The ratio target (>= 1000) is for the CPU scenario ("the simulation runs 1,000 times faster
than the simulated time on this CPU"). On a shared machine the wall ratio drops with the load,
so the process CPU time is printed too (what an idle machine's wall time would be). Last line:
`simulated requests/s: N` over every run (wall time).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from serving import simulate

ROOT = Path(__file__).resolve().parent.parent
CPU = str(ROOT / "validation/results/cpu/hardware/cpu-amd-epyc-1t-measured-20261128-calibrated.json")

# (label, model, hardware, dtype, prompt, generated, rate per s)
SCENARIOS = [
    ("cpu", "vanilla_70", CPU, "fp32", 64, 32, 2.0),
    ("cpu", "block_main_b4_19", CPU, "fp32", 64, 32, 4.0),
    ("h100", "vanilla_410", "h100-sxm-80gb", None, 2048, 128, 60.0),
    ("h100", "block_main_b4_1.2b", "h100-sxm-80gb", None, 2048, 128, 60.0),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at start")
    total_req, total_wall = 0, 0.0
    cpu_ratios = []
    for label, model, hw, dtype, s, g, rate in SCENARIOS:
        simulate(model, hw, rate, s, g, duration_s=20 / rate, dtype=dtype)  # build, warm up
        t0, c0 = time.perf_counter(), time.process_time()
        r = simulate(model, hw, rate, s, g, duration_s=args.requests / rate, seed=0,
                     dtype=dtype)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        ratio = r.makespan_s / wall
        if label == "cpu":
            cpu_ratios.append((ratio, r.makespan_s / cpu))
        total_req += r.requests
        total_wall += wall
        print(f"{label:5s} {model:20s} rate {rate:5g}/s  {r.requests:6d} requests  "
              f"{r.iterations:8d} iterations  simulated {r.makespan_s:9.1f} s  wall "
              f"{wall:6.2f} s (CPU {cpu:5.2f} s)  simulated/wall {ratio:7.0f} (/CPU "
              f"{r.makespan_s / cpu:7.0f})  p95 TTFT {r.ttft_s.p95:.3g} s  "
              f"p95 TPOT {r.tpot_s.p95 * 1e3:.3g} ms  {'sustainable' if r.sustainable else 'NOT sustainable'}")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at end")
    print(f"simulated time / wall time on this CPU's record (target >= 1000): "
          f"{min(r for r, _ in cpu_ratios):.0f} (worst scenario); / process CPU time: "
          f"{min(c for _, c in cpu_ratios):.0f} (the wall ratio of an idle machine)")
    print(f"simulated requests/s: {total_req / total_wall:.0f}")


if __name__ == "__main__":
    main()
