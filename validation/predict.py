"""Cost-model predictions for measured points, one at a time or vectorised for calibration.

A point's phase selects the metric it is compared with (`costmodel.metrics`):

| phase         | what is timed on the reference                    | metric               |
| ------------- | ------------------------------------------------- | -------------------- |
| ``prefill``   | the forwards up to the first token's logits:      | ``ttft_s``           |
|               | vanilla prefill; block embedder + block-decoder   |                      |
|               | prefill + expansion + first token-decoder pass    |                      |
| ``decode_step`` | one decode step after `context` cached tokens:  | ``decode_step_time_s`` |
|               | vanilla one token; block one whole block (embedder, | (prompt = context) |
|               | block-decoder step, prefix pass, L_B - 1 steps)   |                      |
| ``generate``  | ``model.generate`` (prompt S, G new tokens)       | ``request_time_s``   |

Sampling (argmax) and the Python driver are in `generate` only; the cost model has no term for
them beyond the per-forward overhead. Each record carries its spec, profile, dtype and workload,
so `point_inputs` rebuilds exactly what the prediction used.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from costmodel import symbols as sy
from costmodel.api import OpRow, hardware_values, impl_values, model_values, structure_key
from costmodel.errors import UserError
from costmodel.hardware import Hardware
from costmodel.implementation import Implementation, get_implementation
from costmodel.metrics import formulas
from costmodel.spec import BlockSpec, ModelSpec, VanillaSpec

PHASE_METRIC: dict[str, str] = {
    "prefill": "ttft_s", "decode_step": "decode_step_time_s", "generate": "request_time_s",
}
_SPEC = TypeAdapter(ModelSpec)


@dataclass(frozen=True)
class PointInputs:
    spec: VanillaSpec | BlockSpec
    impl: Implementation
    batch: int
    prompt_tokens: int
    generated_tokens: int
    metric: str


def point_inputs(rec: dict[str, Any]) -> PointInputs:
    """What the cost model needs for a dataset record (fields written by `validation.measure`)."""
    phase = rec["phase"]
    if phase not in PHASE_METRIC:
        raise UserError(f"phase: unknown phase {phase!r} (known: {', '.join(PHASE_METRIC)})")
    spec = _SPEC.validate_python(rec["spec"])
    # quantised points (docs/precision.md) record their weight and KV formats
    impl = get_implementation(rec["implementation"], dtype=rec["dtype"],
                              weight_dtype=rec.get("weight_dtype"), kv_dtype=rec.get("kv_dtype"))
    return PointInputs(spec, impl, int(rec["batch"]), int(rec["prompt_tokens"]),
                       int(rec["generated_tokens"]), PHASE_METRIC[phase])


def _values(p: PointInputs) -> dict[Any, float]:
    vals = dict(model_values(p.spec)) | dict(impl_values(p.impl))
    vals |= {sy.B: float(p.batch), sy.S: float(p.prompt_tokens),
             sy.G: float(p.generated_tokens), sy.M_res: 0.0}
    return vals


@dataclass(frozen=True)
class Rates:
    """The calibrated quantities (SI): achievable compute and bandwidth, overheads, and the
    overlap of compute with memory time (`costmodel.roofline`; 1 = the roofline's max)."""

    pi_flops_per_s: float
    beta_bytes_per_s: float
    t_kernel_s: float
    t_forward_s: float
    overlap: float = 1.0
    t_generate_s: float = 0.0

    @classmethod
    def of(cls, hw: Hardware, dtype: str) -> Rates:
        return cls(hw.compute_flops_per_s(dtype), hw.bandwidth_bytes_per_s(),
                   hw.efficiency.kernel_overhead_s, hw.efficiency.forward_overhead_s,
                   hw.efficiency.overlap, hw.efficiency.generate_call_overhead_s)


class Predictor:
    """Vectorised predictions for a fixed list of records under varying `Rates`.

    Records are grouped by (structure, metric); each group is one call of the compiled
    formula with array-valued inputs, so a calibration objective costs a few calls.
    """

    def __init__(self, records: list[dict[str, Any]], hw: Hardware) -> None:
        self.n = len(records)
        self.hw_capacity = hw.capacity_bytes()
        groups: dict[Any, list[tuple[int, PointInputs]]] = defaultdict(list)
        for i, rec in enumerate(records):
            p = point_inputs(rec)
            groups[(structure_key(p.spec, p.impl), p.metric)].append((i, p))
        self.groups = []
        for (key, metric), items in groups.items():
            idx = np.array([i for i, _ in items])
            vals = [_values(p) for _, p in items]
            arrays = {k: np.array([v[k] for v in vals], dtype=np.float64) for k in vals[0]}
            # dequantisation runs at the vector rate: its ratio to the (calibrated) matmul rate
            arrays[sy.pi_v] = np.array([_vector_ratio(hw, p.impl) for _, p in items])
            self.groups.append((formulas(key), metric, idx, arrays))

    def predict(self, rates: Rates) -> np.ndarray:
        out = np.empty(self.n, dtype=np.float64)
        hwv = {sy.pi: rates.pi_flops_per_s, sy.beta: rates.beta_bytes_per_s,
               sy.eta_ov: rates.overlap, sy.t_kernel: rates.t_kernel_s,
               sy.t_forward: rates.t_forward_s, sy.M_cap: self.hw_capacity,
               sy.t_generate: rates.t_generate_s}
        for f, metric, idx, arrays in self.groups:
            pi_v = {sy.pi_v: arrays[sy.pi_v] * rates.pi_flops_per_s}
            out[idx] = f.evaluate(metric, arrays | hwv | pi_v)
        return out


def _vector_ratio(hw: Hardware, impl: Implementation) -> float:
    """pi_v / pi of `hardware_values` (docs/precision.md 3): 1 where the matmul dtype is fp32."""
    vals = hardware_values(hw, impl)
    return vals[sy.pi_v] / vals[sy.pi]


def predict_record(rec: dict[str, Any], hw: Hardware) -> float:
    """Predicted seconds of one record on `hw` (its efficiencies and overheads applied)."""
    p = point_inputs(rec)
    vals = _values(p) | hardware_values(hw, p.impl)
    return float(formulas(structure_key(p.spec, p.impl)).evaluate(p.metric, vals)[0])


def predicted_memory_bytes(rec: dict[str, Any], hw: Hardware) -> float:
    """The cost model's total memory (weights + batch x per-sequence) of a record's request,
    as the reference holds it: without the official code's unused block-decoder ``embed_in``
    (hf-legacy profile) that the reference does not allocate, as `validation.count` does."""
    from costmodel.api import estimate
    from costmodel.workload import Workload

    p = point_inputs(rec)
    total = estimate(p.spec, hw, Workload(batch=p.batch, prompt_tokens=p.prompt_tokens,
                                          generated_tokens=p.generated_tokens),
                     p.impl).memory_bytes_total
    if isinstance(p.spec, BlockSpec) and p.impl.allocates_unused_block_embedding:
        total -= p.spec.params_unused_embed_in * p.impl.dense_weight_bytes_per_element
    return float(total)


def region_rows(rec: dict[str, Any], hw: Hardware | str = "h100-sxm-80gb"
                ) -> list[tuple[OpRow, float]]:
    """The cost model's (phase, op) rows of a record's timed region, each with its weight:

    - generate: every row of the request;
    - prefill: the prefill rows; block models add the first token-decoder pass, one of the
      request's n_g ``token_decoder.prefix`` repeats (weight 1 / n_g);
    - decode_step: one step at context S as the difference of two requests, rows of G = 2
      steps with weight +1 and of G = 1 step with weight -1 (vanilla: the G=2 request's decode
      phase is exactly that step; block: one block-decoder step plus one block of the token
      decoder, i.e. the block the metric times).

    Counts do not depend on `hw`; times do (`validation.op_profile` passes the device's)."""
    from costmodel.api import estimate
    from costmodel.workload import Workload

    p = point_inputs(rec)

    def rows(g: int) -> list[OpRow]:
        return estimate(p.spec, hw, Workload(batch=p.batch, prompt_tokens=p.prompt_tokens,
                                             generated_tokens=g), p.impl).ops

    if p.metric == "request_time_s":
        return [(r, 1.0) for r in rows(p.generated_tokens)]
    if p.metric == "ttft_s":
        all_rows = rows(p.generated_tokens)
        sel = [(r, 1.0) for r in all_rows if r.phase == "prefill"]
        if isinstance(p.spec, BlockSpec):  # first token-decoder pass: one of n_g repeats
            n_g = -(-p.generated_tokens // p.spec.block_length)
            sel += [(r, 1.0 / n_g) for r in all_rows if r.phase == "token_decoder.prefix"]
        return sel
    step = 1 if isinstance(p.spec, VanillaSpec) else p.spec.block_length
    return [(r, 1.0) for r in rows(2 * step)] + [(r, -1.0) for r in rows(step)]


def roofline_counts(rec: dict[str, Any]) -> dict[str, float]:
    """Executed FLOPs and bytes of the timed region (cost model), to place it on a roofline."""
    sel = region_rows(rec)
    return {"flops": sum(r.flops * w for r, w in sel),
            "bytes": sum((r.weight_bytes + r.activation_bytes + r.kv_bytes) * w for r, w in sel)}
