"""Cold start of the CLI: a new `blockroof estimate` process against importing the package.

Run: python benchmarks/cli_cold_start.py [--repeats N]
Each measurement is a fresh Python process (nothing shared in memory). First one estimate with an
empty formula cache (the build a first-time user pays once per model structure), then, side by
side and interleaved so that machine load hits both alike:
- import: `python -c "import costmodel.cli, costmodel.api"`;
- cold estimate: `python -m costmodel.cli estimate ...` with the formula files on disk.
Last line: `cold estimate / import time: R` (medians; target <= 1.5, docs/formula-cache.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--model", default="block_main_b4_1.2b")
    args = ap.parse_args()
    estimate = ["-m", "costmodel.cli", "estimate", "--model", args.model, "--prompt", "2048",
                "--generate", "128", "--batch", "max"]
    importing = ["-c", "import costmodel.cli, costmodel.api"]
    with tempfile.TemporaryDirectory() as cache:
        env = os.environ | {"BLOCKROOF_CACHE_DIR": cache, "OMP_NUM_THREADS": "1",
                            "PYTHONPATH": os.pathsep.join(
                                [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        first = _run(estimate, env)
        print(f"first estimate, empty formula cache (builds and stores): {first:.2f} s")
        t_import, t_est = [], []
        for _ in range(args.repeats):
            t_import.append(_run(importing, env))
            t_est.append(_run(estimate, env))
        off = _run(estimate, env | {"BLOCKROOF_CACHE_DIR": "off"})
    imp, est = statistics.median(t_import), statistics.median(t_est)
    print(f"import costmodel.cli: median {imp:.2f} s (min {min(t_import):.2f})")
    print(f"cold estimate, formulas on disk: median {est:.2f} s (min {min(t_est):.2f})")
    print(f"cold estimate, disk cache off: {off:.2f} s")
    print(f"model {args.model}, {args.repeats} repeats, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"cold estimate / import time: {est / imp:.2f}")


if __name__ == "__main__":
    main()
