"""Device micro-benchmarks: achievable matmul FLOP/s per dtype and memory bandwidth (issue 4).

- Matmul: ``a @ b`` on `randn` data (random data is slower than zeros, docs/engineering-notes.md) for a few
  square and skinny shapes per dtype; warm-up, repeats, median per shape. The achievable
  rate of a dtype is the best shape's median (what a well-shaped GEMM reaches).
- Bandwidth: a buffer far larger than the last-level cache (CPU: 256 MiB, > 8x the 32 MiB L3;
  GPU: 2 GiB, > 40x the H100's 50 MB L2, docs/engineering-notes.md), read (``sum``) and copied (``copy_``).
  Copy counts bytes read plus bytes written, as `costmodel.hardware.Measured` defines.

`hardware_record` turns the figures into a `costmodel.hardware.Hardware` the cost model loads
like a database entry (`save_hardware`, `BLOCKROOF_HARDWARE_DIR`). A GPU whose datasheet entry
is known keeps those datasheet figures beside the measured block; a CPU (no datasheet in the
database) gets the measured figures as its datasheet fields too, and says so in its notes.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from costmodel.hardware import Efficiency, Hardware, Measured, PeakFlops, load_database

from .env import cpu_name, cpu_vendor, device_name, now_iso
from .timing import time_call

TORCH_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# (M, K, N): square GEMMs and the skinny shapes of decoding (few rows, wide weights)
CPU_SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (2048, 1024, 4096))
CPU_SHAPES_QUICK = ((512, 512, 512), (1024, 1024, 1024))
GPU_SHAPES = ((4096, 4096, 4096), (8192, 8192, 8192), (8192, 2048, 8192))
GPU_SHAPES_QUICK = ((4096, 4096, 4096),)


@dataclass
class MatmulResult:
    dtype: str
    shape: tuple[int, int, int]
    median_TFLOPs: float
    spread_TFLOPs: float  # interquartile range of the per-repeat rates
    repeats: int


@dataclass
class MicrobenchResult:
    device: str
    device_name: str
    torch_version: str
    date: str
    threads: int
    matmul: list[MatmulResult] = field(default_factory=list)
    read_GBps: float = 0.0
    copy_GBps: float = 0.0
    bandwidth_spread_GBps: float = 0.0
    buffer_bytes: int = 0

    def best_TFLOPs(self) -> dict[str, float]:
        best: dict[str, float] = {}
        for m in self.matmul:
            best[m.dtype] = max(best.get(m.dtype, 0.0), m.median_TFLOPs)
        return best

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _rates(flops: float, times: tuple[float, ...]) -> tuple[float, float]:
    rates = sorted(flops / t for t in times)
    n = len(rates)
    med = rates[n // 2] if n % 2 else 0.5 * (rates[n // 2 - 1] + rates[n // 2])
    spread = rates[(3 * n) // 4] - rates[n // 4] if n > 1 else 0.0
    return med, spread


def bench_matmul(device: str, dtype: str, shape: tuple[int, int, int], repeats: int = 10,
                 warmup: int = 2) -> MatmulResult:
    m, k, n = shape
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(m, k, generator=gen, device=device).to(TORCH_DTYPE[dtype])
    b = torch.randn(k, n, generator=gen, device=device).to(TORCH_DTYPE[dtype])
    t = time_call(lambda: a @ b, device, warmup=warmup, repeats=repeats)
    med, spread = _rates(2.0 * m * k * n, t.times_s)
    return MatmulResult(dtype, shape, med / 1e12, spread / 1e12, repeats)


def bench_bandwidth(device: str, nbytes: int, repeats: int = 10) -> tuple[float, float, float]:
    """(read GB/s, copy GB/s, copy spread GB/s) on fp32 buffers of `nbytes` each."""
    n = nbytes // 4
    x = torch.randn(n, device=device)
    y = torch.empty_like(x)
    read = time_call(lambda: x.sum(), device, warmup=2, repeats=repeats)
    copy = time_call(lambda: y.copy_(x), device, warmup=2, repeats=repeats)
    read_rate, _ = _rates(float(nbytes), read.times_s)
    copy_rate, copy_spread = _rates(2.0 * nbytes, copy.times_s)
    return read_rate / 1e9, copy_rate / 1e9, copy_spread / 1e9


def run_microbench(device: str = "cpu", dtypes: tuple[str, ...] | None = None,
                   quick: bool = False) -> MicrobenchResult:
    """Matmul rates per dtype and shape, then bandwidth, on `device` ("cpu" or "cuda")."""
    cuda = device.startswith("cuda")
    if dtypes is None:
        dtypes = ("bf16", "fp32") if cuda else ("fp32",)
    shapes = (GPU_SHAPES_QUICK if quick else GPU_SHAPES) if cuda else \
        (CPU_SHAPES_QUICK if quick else CPU_SHAPES)
    res = MicrobenchResult(device=device, device_name=device_name(device),
                           torch_version=torch.__version__, date=now_iso(),
                           threads=torch.get_num_threads())
    for dtype in dtypes:
        for shape in shapes:
            res.matmul.append(bench_matmul(device, dtype, shape, repeats=5 if quick else 10))
    nbytes = (2 << 30 if not quick else 512 << 20) if cuda else \
        (256 << 20 if not quick else 64 << 20)
    res.buffer_bytes = nbytes
    res.read_GBps, res.copy_GBps, res.bandwidth_spread_GBps = bench_bandwidth(
        device, nbytes, repeats=5 if quick else 10)
    return res


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def _datasheet_base(name: str) -> Hardware | None:
    """The database's datasheet entry for a GPU name as torch reports it, if recognised."""
    n = name.lower()
    guess = None
    if "h100" in n:
        guess = "h100-pcie-80gb" if "pcie" in n else "h100-sxm-80gb"
    elif "h200" in n:
        guess = "h200-sxm-141gb"
    elif "a100" in n:
        guess = "a100-sxm-80gb" if "80" in n else "a100-sxm-40gb"
    db = load_database()
    return db.get(guess) if guess else None


def _total_memory_GiB(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / 2**30
    except OSError:
        pass
    return 1.0


def hardware_record(res: MicrobenchResult, date_tag: str | None = None) -> Hardware:
    """A `Hardware` record (efficiencies 1, no overheads: the pure measured roofline)."""
    cuda = res.device.startswith("cuda")
    tag = date_tag or res.date[:10].replace("-", "")
    best = res.best_TFLOPs()
    shapes = "; ".join(f"{m.dtype} {m.shape[0]}x{m.shape[1]}x{m.shape[2]}: "
                       f"{m.median_TFLOPs:.4g} TFLOP/s (IQR {m.spread_TFLOPs:.2g})"
                       for m in res.matmul)
    measured = Measured(
        matmul_TFLOPs=best, memory_bandwidth_GBps=res.copy_GBps, device_name=res.device_name,
        torch_version=res.torch_version, date=res.date,
        notes=(f"validation.microbench, {res.threads} threads. Matmul medians per shape: "
               f"{shapes}. Bandwidth on {res.buffer_bytes / 2**20:.0f} MiB buffers: read "
               f"{res.read_GBps:.4g} GB/s, copy (read+write) {res.copy_GBps:.4g} GB/s "
               f"(IQR {res.bandwidth_spread_GBps:.2g})."))
    source = f"measured by validation.microbench on {res.date}"
    base = _datasheet_base(res.device_name) if cuda else None
    if base is not None:
        return Hardware.model_validate(base.model_dump() | {
            "id": f"{base.id}-run-{tag}",
            "name": f"{base.name} (validation run {tag})",
            "efficiency": Efficiency().model_dump(), "measured": measured.model_dump(),
            "sources": [*base.sources, source],
            "notes": f"Datasheet figures of {base.id}; measured block from this run.",
        })
    peak = PeakFlops(**{f"{d}_TFLOPs": v for d, v in best.items()})
    kind = "gpu" if cuda else "cpu"
    threads = "" if cuda else f" ({res.threads} threads)"
    return Hardware(
        id=f"{kind}-{_slug(res.device_name)}-{res.threads if not cuda else 1}t-measured-{tag}",
        name=f"{res.device_name}{threads}, measured",
        vendor="NVIDIA" if cuda and "nvidia" in res.device_name.lower()
        else (cpu_vendor() if not cuda else "unknown"),
        kind=kind, peak=peak, memory_bandwidth_GBps=res.copy_GBps,
        memory_capacity_GB=round(_total_memory_GiB(res.device), 2),
        memory_capacity_unit="GiB", measured=measured, sources=[source],
        notes=("No datasheet entry: the datasheet fields (peak, memory_bandwidth_GBps) are the "
               "measured figures themselves. " + ("" if cuda else f"CPU: {cpu_name()}.")),
    )
