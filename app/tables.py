"""DataFrames and download payloads built from `Estimate`s (pure: no streamlit).

Column conventions follow `Estimate.breakdown()`: SI units, names carry the unit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from costmodel.api import Estimate

from . import fmt


class MetricSpec(NamedTuple):
    key: str  # Estimate field
    label: str
    unit: str
    show: Callable[[float], str]


COMPARE_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("throughput_tokens_per_s", "Throughput", "tokens/s", fmt.tokens_per_s),
    MetricSpec("ttft_s", "TTFT", "s", fmt.seconds),
    MetricSpec("tpot_s", "TPOT", "s", fmt.seconds),
    MetricSpec("decode_time_per_token_s", "Decode time per token", "s", fmt.seconds),
    MetricSpec("memory_bytes_per_sample", "Memory / sample", "bytes", fmt.bytes_),
    MetricSpec("max_batch", "Max batch", "sequences", fmt.count),
)
EXTRA_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("batch", "Batch used", "sequences", fmt.count),
    MetricSpec("request_time_s", "Request time", "s", fmt.seconds),
    MetricSpec("decode_step_time_s", "Decode step (block: L_B tokens)", "s",
               fmt.seconds),
    MetricSpec("weights_bytes", "Weights", "bytes", fmt.bytes_),
    MetricSpec("kv_cache_bytes_per_sample", "KV cache / sample", "bytes", fmt.bytes_),
    MetricSpec("memory_bytes_total", "Memory total", "bytes", fmt.bytes_),
    MetricSpec("flops_total", "FLOPs (request)", "FLOP", fmt.flops),
    MetricSpec("compute_bound_batch", "Compute-bound batch", "sequences", fmt.count),
    MetricSpec("kv_overtakes_weights_context", "KV > weights past context", "tokens", fmt.count),
)
RATIO_COLUMN = "block / vanilla"


def compare_table(estimates: Mapping[str, Estimate]) -> pd.DataFrame:
    """One row per metric: metric, unit, one column per model label, and the block / vanilla
    ratio when both "Vanilla" and "Block" are present."""
    rows = []
    for m in (*COMPARE_METRICS, *EXTRA_METRICS):
        row: dict[str, object] = {"metric": m.label, "unit": m.unit}
        for label, est in estimates.items():
            row[label] = float(getattr(est, m.key))
        if "Vanilla" in estimates and "Block" in estimates:
            v, b = row["Vanilla"], row["Block"]
            with np.errstate(all="ignore"):
                row[RATIO_COLUMN] = float(np.divide(b, v)) if v else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def compare_display(estimates: Mapping[str, Estimate]) -> pd.DataFrame:
    """`compare_table` as text in human units, with the ratio and whether it is better or
    worse for the Block Transformer (`app.explain.verdict`)."""
    from .explain import verdict

    rows = []
    both = "Vanilla" in estimates and "Block" in estimates
    for m in (*COMPARE_METRICS, *EXTRA_METRICS):
        row: dict[str, str] = {"metric": m.label}
        for label, est in estimates.items():
            row[label] = m.show(float(getattr(est, m.key)))
        if both:
            v, b = (float(getattr(estimates[s], m.key)) for s in ("Vanilla", "Block"))
            with np.errstate(all="ignore"):
                r = float(np.divide(b, v)) if v else float("nan")
            row[RATIO_COLUMN] = fmt.ratio(r)
            row["for the block model"] = verdict(m.key, r).text
        rows.append(row)
    return pd.DataFrame(rows)


def op_table(est: Estimate) -> pd.DataFrame:
    """`Estimate.breakdown()` plus bytes_total and intensity_flops_per_byte (inf for 0 bytes)."""
    df = est.breakdown()
    df["bytes_total"] = df["weight_bytes"] + df["activation_bytes"] + df["kv_bytes"]
    with np.errstate(all="ignore"):
        df["intensity_flops_per_byte"] = np.where(df["bytes_total"] > 0,
                                                  df["flops"] / df["bytes_total"], np.inf)
    return df


def breakdowns_csv(estimates: Mapping[str, Estimate]) -> str:
    """Per (model, phase, op) rows of every estimate, as CSV text."""
    frames = [op_table(est).assign(model=est.model, side=label)
              for label, est in estimates.items()]
    if not frames:
        return ""
    df = pd.concat(frames, ignore_index=True)
    return df[["side", "model", *[c for c in df.columns if c not in ("side", "model")]]].to_csv(
        index=False)


def _json_safe(value: object) -> object:
    """Strict JSON has no Infinity/NaN: non-finite floats become null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def summaries_json(estimates: Mapping[str, Estimate]) -> str:
    """Every estimate's summary (all fields except the op rows), keyed by side, as strict JSON
    (an infinite bound such as compute_bound_batch is written as null)."""
    data = {label: {k: _json_safe(v) for k, v in est.summary().items()}
            for label, est in estimates.items()}
    return json.dumps(data, indent=2, allow_nan=False)


def frame_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False)


def layouts_table(plan: Any) -> pd.DataFrame:
    """One row per (tp, pp) layout a capacity plan considered, with its verdict
    (costmodel.capacity.LayoutOption; docs/parallelism.md 5)."""
    rows = [{"tp": o.tp, "pp": o.pp, "GPUs per replica": o.gpus_per_replica,
             "batch": o.batch, "TPOT (ms)": None if o.tpot_s is None else o.tpot_s * 1e3,
             "tokens/s per replica": o.throughput_tokens_per_s_per_replica,
             "replicas": o.replicas, "GPUs": o.gpus, "verdict": o.verdict}
            for o in plan.layouts]
    return pd.DataFrame(rows)
