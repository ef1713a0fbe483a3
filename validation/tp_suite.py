"""A small timed tensor-parallel suite on the CPU: TP=2 (gloo, 2 ranks x 1 thread) vs TP=1.

For each point (model, batch, prompt, generated tokens; fp32, static profile) the reference's
whole `generate` request is timed with TP=2 (2 spawned gloo ranks x 1 thread, `reference.tp`;
a barrier before each timed request, rank 0's clock) and with TP=1 (rank 0 alone, in between),
alternating, so both see the same machine load (load average recorded; median of `repeats`). Predictions come from the cost model with the hardware record of
`validate allreduce` (the calibrated 1-thread CPU record plus the measured gloo interconnect).

Held out: no parameter is fitted on these points. The CPU efficiencies were calibrated on the
TP=1 `cpu` suite and the interconnect on the all-reduce sweep, so every TP=2 point is held
out; the report gives measured and predicted times per point and the mean absolute percentage
error for TP=2, for TP=1 on the same points (the reference), and of the TP=2 speed-up (the
ratio both clocks measured under the same load).

    blockroof validate tp --out validation/results/cpu/tp2 \
        --hardware validation/results/cpu/collectives/<record>.json
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from costmodel import Parallelism, Workload, estimate
from costmodel.implementation import get_implementation
from costmodel.presets import get_preset
from reference import build_model
from reference.tp import shard_model

from .env import now_iso
from .ranks import run_ranks

# (model, batch, prompt, generated): vanilla and block, a few batches
POINTS: tuple[tuple[str, int, int, int], ...] = (
    ("vanilla_70", 1, 32, 16), ("vanilla_70", 4, 32, 16), ("vanilla_70", 16, 64, 16),
    ("block_main_b4_19", 1, 32, 16), ("block_main_b4_19", 4, 32, 16),
    ("block_main_b4_19", 16, 64, 16),
)


@dataclass
class TPPoint:
    model: str
    batch: int
    prompt_tokens: int
    generated_tokens: int
    measured_tp1_s: float
    measured_tp2_s: float
    predicted_tp1_s: float
    predicted_tp2_s: float
    load: float

    @property
    def error_tp2(self) -> float:
        return self.predicted_tp2_s / self.measured_tp2_s - 1

    @property
    def error_tp1(self) -> float:
        return self.predicted_tp1_s / self.measured_tp1_s - 1

    @property
    def error_speedup(self) -> float:
        """Predicted TP=2 speed-up over measured (both clocks saw the same load)."""
        return (self.predicted_tp1_s / self.predicted_tp2_s) / (
            self.measured_tp1_s / self.measured_tp2_s) - 1


def _prompt(vocab: int, batch: int, prompt: int) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, prompt), generator=torch.Generator().manual_seed(0))


def _time_request(model: Any, ids: torch.Tensor, generate: int, sync: bool) -> float:
    if sync:
        dist.barrier()
    t0 = time.perf_counter()
    model.generate(ids, generate, mode="static")
    return time.perf_counter() - t0


def _tp_worker(rank: int, world: int, points: list[tuple[str, int, int, int]], repeats: int,
               out_path: str) -> None:
    """Per point, TP=2 requests (all ranks) alternate with TP=1 requests (rank 0 alone, the
    other ranks waiting at a barrier), so both see the same machine load."""
    out, sharded, full = [], {}, {}
    for name, b, s, g in points:
        if name not in sharded:
            spec = get_preset(name)
            sharded[name] = shard_model(build_model(spec, seed=0), rank, world)
            if rank == 0:
                full[name] = build_model(spec, seed=0)
        ids = _prompt(sharded[name].spec.vocab_size, b, s)
        t1, t2 = [], []
        for i in range(repeats + 1):  # the first round warms up
            tp2 = _time_request(sharded[name], ids, g, sync=True)
            tp1 = _time_request(full[name], ids, g, sync=False) if rank == 0 else 0.0
            dist.barrier()
            if i:
                t1.append(tp1)
                t2.append(tp2)
        out.append((statistics.median(t1), statistics.median(t2), os.getloadavg()[0]))
    if rank == 0:
        Path(out_path).write_text(json.dumps(out))


def run_tp_suite(hardware: Any, points: tuple[tuple[str, int, int, int], ...] = POINTS,
                 repeats: int = 3) -> list[TPPoint]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tp.json")
        run_ranks(_tp_worker, 2, (list(points), repeats, path), timeout_s=1500)
        measured = json.loads(Path(path).read_text())
    impl = get_implementation("static", dtype="fp32")
    results = []
    for (name, b, s, g), (t1, t2, load) in zip(points, measured, strict=True):
        spec = get_preset(name)
        wl = Workload(batch=b, prompt_tokens=s, generated_tokens=g)
        p1 = estimate(spec, hardware, wl, impl).request_time_s
        p2 = estimate(spec, hardware, wl, impl, parallelism=Parallelism(tp=2)).request_time_s
        results.append(TPPoint(name, b, s, g, t1, t2, p1, p2, load))
    return results


def mape(values: list[float]) -> float:
    return 100 * statistics.fmean(abs(v) for v in values)


def report(points: list[TPPoint]) -> str:
    lines = [f"{'model':18s} {'B':>3s} {'S':>4s} {'G':>3s}  {'tp1_ms':>8s} {'pred1':>8s}  "
             f"{'tp2_ms':>8s} {'pred2':>8s}  {'meas_x':>6s} {'pred_x':>6s}  load"]
    for p in points:
        lines.append(
            f"{p.model:18s} {p.batch:>3d} {p.prompt_tokens:>4d} {p.generated_tokens:>3d}  "
            f"{p.measured_tp1_s * 1e3:>8.1f} {p.predicted_tp1_s * 1e3:>8.1f}  "
            f"{p.measured_tp2_s * 1e3:>8.1f} {p.predicted_tp2_s * 1e3:>8.1f}  "
            f"{p.measured_tp1_s / p.measured_tp2_s:>6.2f} "
            f"{p.predicted_tp1_s / p.predicted_tp2_s:>6.2f}  {p.load:.1f}")
    lines.append(f"speed-up tp2/tp1 MAPE: {mape([p.error_speedup for p in points]):.1f}%")
    lines.append(f"held-out MAPE tp2: {mape([p.error_tp2 for p in points]):.1f}% "
                 f"(tp1 on the same points: {mape([p.error_tp1 for p in points]):.1f}%)")
    return "\n".join(lines)


def write(points: list[TPPoint], out_dir: Path, hardware: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"date": now_iso(), "hardware": hardware, "torch_version": torch.__version__,
            "threads_per_rank": 1, "points": [asdict(p) for p in points],
            "heldout_mape_tp2_pct": mape([p.error_tp2 for p in points]),
            "mape_tp1_pct": mape([p.error_tp1 for p in points]),
            "speedup_mape_pct": mape([p.error_speedup for p in points])}
    path = out_dir / "tp_suite.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _cmd(args: Any) -> None:
    from costmodel.hardware import get_hardware

    hw = get_hardware(args.hardware)  # fails early, naming the record
    points = POINTS[: args.limit] if args.limit else POINTS
    res = run_tp_suite(hw, points, args.repeats)
    print(report(res))
    print(f"wrote {write(res, Path(args.out), hw.id)}")
