"""Per-op time of one timed region: measured on the reference beside the cost model's rows.

Where `validation.report` compares whole regions (a prefill, a decode step, a request), this
splits one region by op, so a residual can be traced to the op (and so the formula) behind it.

Measured: forward hooks on every module of the reference time each call; an op's time is the
exclusive time of its modules (a module's own time minus that of the modules it calls), summed
over the region and named as the cost model names ops (`validation.tracing.op_name`: layer
indices dropped; ``layers`` is the decoder layer's own code, the residual additions). The root
module's own time is ``(forward calls)`` (the cost model's per-forward overhead row), and time
in the region outside any forward (the block model's Python loop over a block) is
``(outside forwards)``. A module's own code that the cost model has no op for (the reshapes
of ``layers.attn``, the gate product of a gated ``layers.mlp``) shows under the module's name with no
prediction; the KV-cache update runs as a method of `reference.kv_cache.KVCache`, not a
forward, so its time is inside ``layers.attn``. On CUDA every hook synchronises the device,
which serialises the kernels: per-op times there are upper bounds of what overlapped
execution takes.

Predicted: the cost model's rows of the same region (`validation.predict.region_rows`), their
``time_s`` on the given hardware record (use a calibrated one to see what calibration leaves),
summed per op name.

The hooks cost a few microseconds per module call; the region is also timed without them, and
both totals are reported.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from costmodel.errors import UserError, atomic_path
from costmodel.hardware import Hardware
from reference import build_model

from .measure import region, release
from .microbench import TORCH_DTYPE
from .predict import region_rows
from .suites import Point
from .tracing import op_name

FORWARD_CALLS = "(forward calls)"
OUTSIDE = "(outside forwards)"


@dataclass(frozen=True)
class OpTime:
    op: str
    measured_s: float
    predicted_s: float
    t_math_s: float
    t_mem_s: float

    @property
    def ratio(self) -> float:
        """Predicted / measured (nan when nothing was measured)."""
        return self.predicted_s / self.measured_s if self.measured_s > 0 else float("nan")


@dataclass
class OpProfile:
    model: str
    phase: str
    batch: int
    context: int
    implementation: str
    device: str
    dtype: str
    hardware: str
    region_s: float  # median region time without hooks
    region_hooked_s: float  # median region time with the hooks
    ops: list[OpTime] = field(default_factory=list)

    @property
    def predicted_s(self) -> float:
        return sum(o.predicted_s for o in self.ops)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["predicted_s"] = self.predicted_s
        return out


class _OpClock:
    """Exclusive time per op name over the calls made while installed."""

    def __init__(self, model: nn.Module, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[list[float]] = []  # [start, time spent in callees]
        self.handles = []
        for path, module in model.named_modules():
            name = op_name(path) or FORWARD_CALLS
            self.handles.append(module.register_forward_pre_hook(self._enter))
            self.handles.append(module.register_forward_hook(self._leave_as(name)))

    def _enter(self, module: nn.Module, args: Any) -> None:
        self.sync()
        self.stack.append([time.perf_counter(), 0.0])

    def _leave_as(self, name: str) -> Callable[..., None]:
        def leave(module: nn.Module, args: Any, out: Any) -> None:
            self.sync()
            start, inner = self.stack.pop()
            spent = time.perf_counter() - start
            self.totals[name] += spent - inner
            if self.stack:
                self.stack[-1][1] += spent
        return leave

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _sync_for(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def _timed(fn: Callable[[], Any], after: Callable[[], Any] | None,
           sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    spent = time.perf_counter() - t0
    if after is not None:
        after()
    return spent


def profile(point: Point, hw: Hardware, device: str = "cpu", dtype: str = "fp32",
            repeats: int = 10, warmup: int = 3) -> OpProfile:
    """Measure `point`'s region per op on `device` and predict it on `hw` (module docstring)."""
    if dtype not in TORCH_DTYPE:
        raise UserError(f"dtype: expected one of {', '.join(TORCH_DTYPE)}, got {dtype!r}")
    if point.batch == "max":
        raise UserError("batch: the op profile needs a fixed batch, got 'max'")
    if repeats < 1 or warmup < 0:
        raise UserError(f"repeats, warmup: need repeats >= 1 and warmup >= 0, got {repeats}, "
                         f"{warmup}")
    batch = int(point.batch)
    spec = point.spec()
    model = build_model(spec, device=device, dtype=TORCH_DTYPE[dtype], seed=0)
    model.eval()
    sync = _sync_for(device)
    reg = region(model, spec, point, batch, device)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                if reg.before:
                    reg.before()
                _timed(reg.fn, reg.after, sync)
            plain = []
            for _ in range(repeats):
                if reg.before:
                    reg.before()
                plain.append(_timed(reg.fn, reg.after, sync))
            clock = _OpClock(model, sync)
            hooked = []
            try:
                for _ in range(repeats):
                    if reg.before:
                        reg.before()
                    hooked.append(_timed(reg.fn, reg.after, sync))
            finally:
                clock.remove()
    finally:
        release(model)
    measured = {op: t / repeats for op, t in clock.totals.items()}
    measured[OUTSIDE] = max(0.0, statistics.fmean(hooked) - sum(measured.values()))
    rec = {"phase": point.phase, "spec": spec.model_dump(), "implementation": point.profile,
           "dtype": dtype, "batch": batch, "prompt_tokens": point.prompt_tokens,
           "generated_tokens": point.recorded_generated_tokens(spec)}
    predicted: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for row, w in region_rows(rec, hw):
        acc = predicted[row.name]
        acc[0] += w * row.time_s
        acc[1] += w * row.t_math_s
        acc[2] += w * row.t_mem_s
    names = sorted(set(measured) | set(predicted),
                   key=lambda n: -max(measured.get(n, 0.0), predicted.get(n, [0.0])[0]))
    ops = [OpTime(n, measured.get(n, 0.0), *predicted.get(n, [0.0, 0.0, 0.0])) for n in names]
    return OpProfile(spec.name, point.phase, batch, point.prompt_tokens, point.profile, device,
                     dtype, hw.id, statistics.median(plain), statistics.median(hooked), ops)


def format_profile(prof: OpProfile) -> str:
    """The table the CLI prints (milliseconds), largest ops first, totals last."""
    lines = [f"{prof.model} {prof.phase} B={prof.batch} context={prof.context} "
             f"({prof.implementation}, {prof.dtype} on {prof.device}); predicted on "
             f"{prof.hardware}",
             f"{'op':34s} {'measured':>9s} {'predicted':>9s} {'pred/meas':>9s} "
             f"{'T_math':>8s} {'T_mem':>8s}"]
    for o in prof.ops:
        if o.measured_s == 0 and o.predicted_s == 0:
            continue
        ratio = f"{o.ratio:9.2f}" if o.measured_s > 0 else f"{'-':>9s}"
        lines.append(f"{o.op:34s} {o.measured_s * 1e3:9.3f} {o.predicted_s * 1e3:9.3f} {ratio} "
                     f"{o.t_math_s * 1e3:8.3f} {o.t_mem_s * 1e3:8.3f}")
    total_meas = sum(o.measured_s for o in prof.ops)
    lines.append(f"{'total (ms)':34s} {total_meas * 1e3:9.3f} {prof.predicted_s * 1e3:9.3f} "
                 f"{prof.predicted_s / total_meas:9.2f}")
    lines.append(f"region without hooks: {prof.region_s * 1e3:.3f} ms (with hooks "
                 f"{prof.region_hooked_s * 1e3:.3f} ms)")
    return "\n".join(lines)


def plot_profile(prof: OpProfile, path: str | Path, top: int = 16) -> Path:
    """Horizontal bars, measured beside predicted, for the `top` largest ops (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = [o for o in prof.ops if o.measured_s or o.predicted_s][:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(ops) + 1.4))
    y = np.arange(len(ops))
    ax.barh(y + 0.2, [o.measured_s * 1e3 for o in ops], 0.4, label="measured")
    ax.barh(y - 0.2, [o.predicted_s * 1e3 for o in ops], 0.4, label=f"predicted ({prof.hardware})")
    ax.set_yticks(y, [o.op for o in ops], fontsize=8)
    ax.set_xlabel("ms per region")
    ax.set_title(f"{prof.model} {prof.phase} B={prof.batch} context={prof.context}: per-op time",
                 fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=110, format=out.suffix.lstrip(".").lower() or "png")
    finally:
        plt.close(fig)
    return out
