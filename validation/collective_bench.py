"""All-reduce micro-benchmark over torch.distributed, and the interconnect record it feeds.

`run_allreduce_bench(world, sizes)` spawns `world` ranks (gloo on CPU, 1 thread each; NCCL on
CUDA when `device="cuda"` and enough GPUs), times ``dist.all_reduce`` of fp32 tensors of each
size (warm-up, then repeats; a barrier before each timed call; rank 0's median), and fits the
alpha-beta model of costmodel.collectives to the medians (docs/parallelism.md 3):

    t(M) = 2 (p - 1) * alpha + 2 (p - 1) / p * M / beta

by least squares on relative error (weights 1/t), giving alpha (latency per step) and beta
(bandwidth per direction). `interconnect_record` writes a copy of a measured hardware record
with ``interconnect_latency_us`` and ``interconnect_GBps_per_direction`` set from the fit, so
the cost model can predict tensor-parallel runs on this machine.

    blockroof validate allreduce --out validation/results/cpu/collectives
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from costmodel.hardware import Hardware, get_hardware, save_hardware

from .env import now_iso
from .ranks import run_ranks

DEFAULT_SIZES = tuple(4 * 4**k for k in range(12))  # 4 B .. 16 MiB


@dataclass
class AllReduceResult:
    backend: str
    world: int
    threads: int
    torch_version: str
    date: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sizes_bytes: list[int] = field(default_factory=list)
    median_s: list[float] = field(default_factory=list)
    iqr_s: list[float] = field(default_factory=list)
    latency_per_step_us: float = 0.0
    bandwidth_GBps: float = 0.0
    fit_max_rel_error: float = 0.0


def _worker(rank: int, world: int, sizes: list[int], repeats: int, out_path: str) -> None:
    device = f"cuda:{rank}" if dist.get_backend() == "nccl" else "cpu"
    medians, iqrs = [], []
    for size in sizes:
        x = torch.ones(max(size // 4, 1), dtype=torch.float32, device=device)
        times = []
        for i in range(repeats + 3):
            dist.barrier()
            if device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            dist.all_reduce(x)
            if device != "cpu":
                torch.cuda.synchronize()
            if i >= 3:
                times.append(time.perf_counter() - t0)
        q = statistics.quantiles(times, n=4)
        medians.append(statistics.median(times))
        iqrs.append(q[2] - q[0])
    if rank == 0:
        Path(out_path).write_text(json.dumps({"median_s": medians, "iqr_s": iqrs}))


def fit_alpha_beta(sizes: list[int], times: list[float], world: int) -> tuple[float, float, float]:
    """(latency per step s, bandwidth bytes/s, max relative error of the fit) for a ring."""
    steps = 2 * (world - 1)
    x = np.asarray(sizes, dtype=np.float64) * steps / world
    t = np.asarray(times, dtype=np.float64)
    a = np.stack([np.full_like(x, steps), x], axis=1) / t[:, None]  # rows weighted by 1/t
    (alpha, inv_beta), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    alpha, inv_beta = max(alpha, 1e-9), max(inv_beta, 1e-15)
    pred = steps * alpha + x * inv_beta
    return float(alpha), float(1.0 / inv_beta), float(np.max(np.abs(pred / t - 1)))


def run_allreduce_bench(world: int = 2, sizes: tuple[int, ...] = DEFAULT_SIZES,
                        repeats: int = 30, device: str = "cpu",
                        timeout_s: float = 600) -> AllReduceResult:
    backend = "nccl" if device == "cuda" else "gloo"
    res = AllReduceResult(backend=backend, world=world, threads=1,
                          torch_version=torch.__version__, date=now_iso(),
                          load_before=os.getloadavg(), sizes_bytes=list(sizes))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        run_ranks(_worker, world, (list(sizes), repeats, out), backend, timeout_s)
        data = json.loads(Path(out).read_text())
    res.median_s, res.iqr_s = data["median_s"], data["iqr_s"]
    res.load_after = os.getloadavg()
    alpha, beta, err = fit_alpha_beta(res.sizes_bytes, res.median_s, world)
    res.latency_per_step_us, res.bandwidth_GBps, res.fit_max_rel_error = alpha * 1e6, beta / 1e9, err
    return res


def interconnect_record(base: str | Hardware, res: AllReduceResult) -> Hardware:
    """`base` with the fitted interconnect (id suffixed ``-<backend>``)."""
    hw = get_hardware(base)
    data = hw.model_dump() | {
        "id": f"{hw.id}-{res.backend}",
        "name": f"{hw.name}, {res.backend} all-reduce measured",
        "interconnect_GBps_per_direction": res.bandwidth_GBps,
        "interconnect_latency_us": res.latency_per_step_us,
        "notes": (hw.notes + " " if hw.notes else "") + (
            f"Interconnect fitted by validation.collective_bench ({res.backend}, {res.world} "
            f"ranks x {res.threads} thread, {res.date}, load {res.load_before[0]:.2f}): "
            f"alpha {res.latency_per_step_us:.2f} us per ring step, beta "
            f"{res.bandwidth_GBps:.3f} GB/s; fit within {res.fit_max_rel_error:.0%} of every "
            "size's median."),
    }
    return Hardware.model_validate(data)


def write_results(res: AllReduceResult, out_dir: Path, base: str | None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "allreduce.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(res), indent=2) + "\n")
    os.replace(tmp, path)
    written = [path]
    if base is not None:
        written.append(save_hardware(interconnect_record(base, res), out_dir))
    return written


def describe(res: AllReduceResult) -> str:
    lines = [f"{res.backend} all-reduce, {res.world} ranks x {res.threads} thread, load "
             f"{res.load_before[0]:.2f} -> {res.load_after[0]:.2f}",
             f"{'bytes':>10s}  {'median_us':>10s}  {'iqr_us':>8s}"]
    for m, t, q in zip(res.sizes_bytes, res.median_s, res.iqr_s, strict=True):
        lines.append(f"{m:>10d}  {t * 1e6:>10.1f}  {q * 1e6:>8.1f}")
    lines.append(f"fit: latency {res.latency_per_step_us:.2f} us per step, bandwidth "
                 f"{res.bandwidth_GBps:.3f} GB/s per direction (max rel. error "
                 f"{res.fit_max_rel_error:.0%})")
    return "\n".join(lines)


def _cmd(args: Any) -> None:
    from costmodel.errors import UserError

    if args.world < 2:
        raise UserError(f"--world: needs at least 2 ranks, got {args.world}")
    if args.device == "cuda" and torch.cuda.device_count() < args.world:
        raise UserError(f"--world: {args.world} ranks need as many GPUs, found "
                        f"{torch.cuda.device_count()}")
    base = args.base or None
    if base and not base.endswith(".json"):
        candidate = Path("validation/results/cpu/hardware") / f"{base}.json"
        base = str(candidate) if candidate.exists() else base
    res = run_allreduce_bench(args.world, repeats=args.repeats, device=args.device)
    print(describe(res))
    for p in write_results(res, Path(args.out), base):
        print(f"wrote {p}")
