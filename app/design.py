"""Design-space sweeps for the dashboard, each one vectorised `costmodel.sweep` call per model.

Pure functions of specs, hardware and workload (no streamlit). Frames are long-form: one row
per (side, x), with the metric in column "value" and "fits" (batch <= max batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from costmodel.api import sweep
from costmodel.hardware import Hardware
from costmodel.implementation import get_implementation
from costmodel.paper import TABLE1
from costmodel.presets import PRESET_NAMES, display_name, get_preset
from costmodel.spec import BlockSpec, VanillaSpec
from costmodel.workload import Workload

from . import figures


class MetricChoice(NamedTuple):
    label: str
    unit: str
    log: bool


METRICS: dict[str, MetricChoice] = {
    "throughput_tokens_per_s": MetricChoice("Throughput", "generated tokens/s", True),
    "ttft_s": MetricChoice("TTFT", "s", True),
    "tpot_s": MetricChoice("TPOT", "s", True),
    "request_time_s": MetricChoice("Request time", "s", True),
    "memory_bytes_per_sample": MetricChoice("Memory per sample", "bytes", True),
    "max_batch": MetricChoice("Max batch", "sequences", True),
}
AXES: dict[str, str] = {
    "block_length": "Block length L_B",
    "batch": "Batch",
    "prompt_tokens": "Prompt tokens",
    "generated_tokens": "Generated tokens",
    "hardware": "Hardware",
}
BLOCK_LENGTHS = (1, 2, 4, 8, 16, 32, 64)
BATCHES = tuple(2**k for k in range(0, 15))
LENGTHS = tuple(2**k for k in range(7, 16))  # 128 .. 32768
HEAT_BATCHES = tuple(2**k for k in range(0, 13))
HEAT_PROMPTS = tuple(2**k for k in range(7, 16))
PARETO_X: dict[str, str] = {
    "params_total": "total parameters",
    "params_non_embedding": "non-embedding parameters",
    "loss": "paper training loss (docs/model.md 5.2)",
}

Model = VanillaSpec | BlockSpec


def _batch(workload: Workload) -> int | str:
    return workload.batch


def _one(spec: Model, hw: Hardware, workload: Workload, profile: str, metric: str,
         **axes) -> pd.DataFrame:
    kwargs = {"batch": _batch(workload), "prompt_tokens": workload.prompt_tokens,
              "generated_tokens": workload.generated_tokens} | axes
    metrics = tuple(dict.fromkeys((metric, "max_batch")))
    return sweep(spec, hw, implementation=profile, metrics=metrics,
                 memory_reserve_bytes=workload.memory_reserve_bytes, **kwargs)


def _finish(df: pd.DataFrame, side: str, x: str, metric: str) -> pd.DataFrame:
    out = pd.DataFrame({"side": side, "model": df["model"].astype(str), "x": df[x],
                        "value": df[metric], "batch": df["batch"],
                        "fits": df["batch"] <= df["max_batch"]})
    return out


def usable_hardware(devices: Sequence[Hardware], profile: str
                    ) -> tuple[list[Hardware], list[str]]:
    """Devices with a compute rate for the profile's dtype, and the ids of the others."""
    dtype = get_implementation(profile).compute_dtype
    ok = [d for d in devices if dtype in d.supported_dtypes()]
    return ok, [d.id for d in devices if d not in ok]


def axis_sweep(models: Mapping[str, Model], hw: Hardware, workload: Workload, profile: str,
               axis: str, metric: str, hardware: Sequence[Hardware] = ()) -> pd.DataFrame:
    """`metric` against one axis (a key of AXES) for every model; columns side, model, x,
    value, batch, fits. Block lengths that do not divide the block decoder's width are left
    out; a vanilla model is flat in block length; points that do not fit memory are dropped
    (batch axis)."""
    if axis not in AXES:
        raise ValueError(f"axis: unknown {axis!r} (known: {', '.join(AXES)})")
    if metric not in METRICS:
        raise ValueError(f"metric: unknown {metric!r} (known: {', '.join(METRICS)})")
    parts = []
    for side, spec in models.items():
        if axis == "block_length":
            if isinstance(spec, BlockSpec):
                lbs = [lb for lb in BLOCK_LENGTHS if spec.block_decoder.d_model % lb == 0]
                df = _one(spec, hw, workload, profile, metric, block_length=lbs)
                parts.append(_finish(df, side, "block_length", metric))
            else:
                df = _one(spec, hw, workload, profile, metric)
                rep = df.loc[df.index.repeat(len(BLOCK_LENGTHS))].reset_index(drop=True)
                rep["block_length"] = np.asarray(BLOCK_LENGTHS, dtype=float)
                parts.append(_finish(rep, side, "block_length", metric))
        elif axis == "hardware":
            devices = usable_hardware(list(hardware) or [hw], profile)[0]
            if not devices:
                continue
            df = _one(spec, devices, workload, profile, metric)
            df["hardware"] = df["hardware"].astype(str)
            parts.append(_finish(df, side, "hardware", metric))
        else:
            values = BATCHES if axis == "batch" else LENGTHS
            df = _one(spec, hw, workload, profile, metric, **{axis: list(values)})
            part = _finish(df, side, axis, metric)
            if axis == "batch":
                part = part[part["fits"]]
            parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def heatmap(spec: Model, hw: Hardware, workload: Workload, profile: str,
            metric: str) -> pd.DataFrame:
    """`metric` over batch (columns) x prompt tokens (rows); NaN where the batch does not fit."""
    df = _one(spec, hw, workload, profile, metric, batch=list(HEAT_BATCHES),
              prompt_tokens=list(HEAT_PROMPTS))
    df = df.assign(value=np.where(df["batch"] <= df["max_batch"], df[metric], np.nan))
    pivot = df.pivot_table(index="prompt_tokens", columns="batch", values="value",
                           aggfunc="first", dropna=False)
    pivot.index = pivot.index.astype(int)
    pivot.columns = pivot.columns.astype(int)
    return pivot


def pareto(hw: Hardware, workload: Workload, profile: str, x: str = "params_total"
           ) -> pd.DataFrame:
    """Throughput of the paper's ten presets; columns name, preset, kind, params_total,
    params_non_embedding, loss, throughput_tokens_per_s, batch, pareto (on the frontier of
    lower `x` and higher throughput across both kinds)."""
    if x not in PARETO_X:
        raise ValueError(f"x: unknown {x!r} (known: {', '.join(PARETO_X)})")
    df = _one(list(PRESET_NAMES), hw, workload, profile, "throughput_tokens_per_s")
    loss = {r.preset: r.loss for r in TABLE1}
    specs = [get_preset(n) for n in PRESET_NAMES]
    out = pd.DataFrame({
        "name": [display_name(n) for n in PRESET_NAMES],
        "preset": list(PRESET_NAMES),
        "kind": [s.kind for s in specs],
        "params_total": [float(s.params_total) for s in specs],
        "params_non_embedding": [float(s.params_non_embedding) for s in specs],
        "loss": [loss.get(n, np.nan) for n in PRESET_NAMES],
        "throughput_tokens_per_s": df["throughput_tokens_per_s"].to_numpy(),
        "batch": df["batch"].to_numpy(),
    })
    out["pareto"] = figures.pareto_mask(out[x], out["throughput_tokens_per_s"])
    return out
