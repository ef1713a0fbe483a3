"""Re-render time of the dashboard's default view (Compare) after a widget change.

    python benchmarks/app_rerender.py [--runs 20]

Runs the app in-process with Streamlit's AppTest, warms it up (imports, formula builds, first
figures), then times `at.run()` after each sidebar change (prompt length, generated length,
hardware, profile and batch mode, in turn) and prints the median, the 90th percentile and the
worst. The budget (issue 5) is 300 ms on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"
BUDGET_S = 0.300


def _changes(i: int):
    """The i-th interaction: (widget kind, key, value)."""
    cycle = [
        ("number_input", "prompt_tokens", 1024 + i),
        ("number_input", "generated_tokens", 128 + i),
        ("selectbox", "hardware", "a100-sxm-80gb" if i % 2 else "h100-sxm-80gb"),
        ("radio", "profile", "hf-legacy" if i % 2 else "static"),
        ("radio", "batch_mode", "fixed" if i % 2 else "max"),
    ]
    return cycle[i % len(cycle)]


def measure(runs: int = 20, warmup: int = 10) -> list[float]:
    """Seconds per `at.run()` after a widget change, `runs` times, after `warmup` changes."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    times = []
    for i in range(warmup + runs):
        kind, key, value = _changes(i)
        getattr(at.sidebar, kind)(key=key).set_value(value)
        t0 = time.perf_counter()
        at.run()
        elapsed = time.perf_counter() - t0
        if at.exception:
            raise RuntimeError(f"app raised: {at.exception[0].message}")
        if i >= warmup:
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    times = sorted(measure(args.runs))
    median = statistics.median(times)
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    print(f"re-render after a widget change (Compare page, AppTest, {len(times)} runs): "
          f"median {median * 1e3:.0f} ms, p90 {p90 * 1e3:.0f} ms, max {times[-1] * 1e3:.0f} ms "
          f"(budget {BUDGET_S * 1e3:.0f} ms); load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
