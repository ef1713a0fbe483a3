"""Python API: `estimate`, `sweep`, `formula` (the CLI and the dashboard call these).

    >>> from costmodel import estimate, Workload
    >>> est = estimate("block_main_b4_1.2b", "h100-sxm-80gb",
    ...                Workload(batch="max", prompt_tokens=2048, generated_tokens=128))
    >>> est.throughput_tokens_per_s, est.batch, est.breakdown()   # DataFrame per (phase, op)

Numbers come from the compiled formulas of `costmodel.metrics`; every numeric input is cast to
float64 at this boundary (int64 overflows silently in these formulas, NOTES.md).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import sympy as sp
from pydantic import BaseModel

from . import symbols as sy
from .hardware import Hardware, get_hardware
from .implementation import Implementation, get_implementation
from .metrics import ARGS, METRICS, ROW_FIELDS, StructureKey, formulas
from .ops import ImplStructure, StackStructure
from .precision import check_group_size
from .presets import get_preset, with_block_length
from .spec import BlockSpec, StackSpec, VanillaSpec
from .workload import Workload

ModelLike = VanillaSpec | BlockSpec | str
HardwareLike = Hardware | str


# --- binding specs, hardware and workload to the formulas' symbols ---------------------------

def resolve_model(model: ModelLike) -> VanillaSpec | BlockSpec:
    if isinstance(model, VanillaSpec | BlockSpec):
        return model
    if isinstance(model, str):
        return get_preset(model)
    raise TypeError(f"model: expected a preset name or a spec, got {type(model).__name__}")


def structure_key(spec: VanillaSpec | BlockSpec, impl: Implementation) -> StructureKey:
    im = ImplStructure.of(impl)
    if isinstance(spec, VanillaSpec):
        return StructureKey("vanilla", (StackStructure.of(spec.stack),), im, spec.tie_embeddings)
    return StructureKey("block", (StackStructure.of(spec.block_decoder),
                                  StackStructure.of(spec.token_decoder)), im,
                        unused_embedding=impl.allocates_unused_block_embedding)


def _stack_values(x: sy.StackSymbols, st: StackSpec | None) -> dict[sp.Symbol, float]:
    if st is None:  # unused by this structure's formulas; any positive value
        return dict.fromkeys(x, 1.0)
    return dict(zip(x, map(float, (st.n_layers, st.d_model, st.n_heads, st.kv_heads, st.dh,
                                   st.d_ffn)), strict=True))


def model_values(spec: VanillaSpec | BlockSpec) -> dict[sp.Symbol, float]:
    if isinstance(spec, VanillaSpec):
        vals = {sy.L_B: 1.0, sy.P: 1.0} | _stack_values(sy.VANILLA, spec.stack)
        vals |= _stack_values(sy.BLOCK_DEC, None) | _stack_values(sy.TOKEN_DEC, None)
    else:
        vals = {sy.L_B: float(spec.block_length), sy.P: float(spec.prefix_length)}
        vals |= _stack_values(sy.VANILLA, None)
        vals |= _stack_values(sy.BLOCK_DEC, spec.block_decoder)
        vals |= _stack_values(sy.TOKEN_DEC, spec.token_decoder)
    vals[sy.V] = float(spec.vocab_size)
    return vals


def hardware_values(hw: Hardware, impl: Implementation) -> dict[sp.Symbol, float]:
    pi = compute_rate(hw, impl)
    return {
        sy.pi: pi,
        sy.beta: hw.bandwidth_bytes_per_s(),
        sy.eta_ov: float(hw.efficiency.overlap),
        sy.t_kernel: float(hw.efficiency.kernel_overhead_s),
        sy.t_forward: float(hw.efficiency.forward_overhead_s),
        sy.M_cap: hw.capacity_bytes(),
        sy.pi_v: vector_rate(hw, pi),
        sy.t_generate: float(hw.efficiency.generate_call_overhead_s),
    }


def compute_rate(hw: Hardware, impl: Implementation) -> float:
    """The matmul rate of the implementation's compute dtype; a device without it gets one line
    naming the field and the dtypes it has (docs/precision.md 4)."""
    if impl.compute_dtype not in hw.supported_dtypes():
        raise ValueError(
            f"compute_dtype: hardware {hw.id!r} has no {impl.compute_dtype} rate; it has "
            f"{', '.join(hw.supported_dtypes()) or 'none'} (choose another compute dtype)")
    return hw.compute_flops_per_s(impl.compute_dtype)


def vector_rate(hw: Hardware, pi: float) -> float:
    """Rate of (de)quantisation arithmetic: the fp32 vector (CUDA-core / SIMD FMA) rate, or the
    matmul rate where the record has no fp32 figure (docs/precision.md 3)."""
    return hw.compute_flops_per_s("fp32") if "fp32" in hw.supported_dtypes() else pi


def impl_values(impl: Implementation) -> dict[sp.Symbol, float]:
    v = impl.precision_values
    return {getattr(sy, name): float(val) for name, val in v.items()}


def check_precision(spec: VanillaSpec | BlockSpec, impl: Implementation) -> None:
    """Bad precision for this model: a group size that does not divide a linear's input width;
    quantised weights on a model whose LM head shares the embedding table."""
    if isinstance(spec, VanillaSpec):
        stacks = {"": spec.stack}
        dims = {"lm_head": spec.stack.d_model}
        if spec.tie_embeddings and impl.weight_dtype not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"weight_dtype: {impl.weight_dtype!r} needs an untied LM head; "
                             f"{spec.name} ties it to the embedding table")
    else:
        stacks = {"block_decoder.": spec.block_decoder, "token_decoder.": spec.token_decoder}
        dims = {"token_decoder.expansion": spec.block_decoder.d_model,
                "token_decoder.lm_head": spec.token_decoder.d_model}
    for prefix, st in stacks.items():
        dims |= {f"{prefix}layers.attn.qkv": st.d_model,
                 f"{prefix}layers.attn.dense": st.n_heads * st.dh,
                 f"{prefix}layers.mlp.down": st.d_ffn}
    check_group_size(impl.weight_dtype, dims)


# --- results ------------------------------------------------------------------------------------

class OpRow(BaseModel, frozen=True):
    """One (phase, op) of a request, summed over the phase's forwards."""

    phase: str
    name: str
    flops: float
    useful_flops: float
    weight_bytes: float
    activation_bytes: float
    kv_bytes: float
    kernels: float
    time_flops: float  # the FLOPs the roofline time counts (useful ones for flash-style attention)
    dequant_flops: float = 0.0  # (de)quantisation FLOPs at the vector rate (docs/precision.md 3)
    t_math_s: float
    t_mem_s: float
    time_s: float
    bound: Literal["compute", "memory", "overhead", "none"]

    @property
    def intensity_flops_per_byte(self) -> float:
        b = self.weight_bytes + self.activation_bytes + self.kv_bytes
        return self.flops / b if b else math.inf


class Estimate(BaseModel, frozen=True):
    """A prediction for one model, hardware, workload and implementation profile."""

    model: str
    kind: Literal["vanilla", "block"]
    hardware: str
    implementation: str
    weight_dtype: str = "bf16"
    compute_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    batch: int
    prompt_tokens: int
    generated_tokens: int
    ttft_s: float
    tpot_s: float
    request_time_s: float
    throughput_tokens_per_s: float
    decode_step_time_s: float
    weights_bytes: float
    kv_cache_bytes_per_sample: float
    workspace_bytes_per_sample: float
    memory_bytes_per_sample: float
    memory_bytes_total: float
    max_batch: int
    fits: bool
    flops_total: float
    useful_flops_total: float
    weight_bytes_total: float
    activation_bytes_total: float
    kv_bytes_total: float
    compute_bound_batch: float
    kv_overtakes_weights_context: float
    ops: list[OpRow]

    def breakdown(self) -> pd.DataFrame:
        """Per (phase, op) table: FLOPs, bytes by kind, T_math, T_mem, time, bound."""
        return pd.DataFrame([r.model_dump() for r in self.ops])

    def phases(self) -> pd.DataFrame:
        """Per phase: summed FLOPs, bytes and time."""
        df = self.breakdown()
        cols = ["flops", "weight_bytes", "activation_bytes", "kv_bytes", "t_math_s", "t_mem_s",
                "time_s"]
        return df.groupby("phase", sort=False)[cols].sum().reset_index()

    def summary(self) -> dict[str, Any]:
        return self.model_dump(exclude={"ops"})


def _bound(t_math: float, t_mem: float, time: float) -> str:
    if t_math == 0 and t_mem == 0:
        return "overhead" if time > 0 else "none"
    return "compute" if t_math >= t_mem else "memory"


def symbol_values(spec: VanillaSpec | BlockSpec, hw: Hardware, impl: Implementation,
                  workload: Workload, batch: float) -> dict[sp.Symbol, float]:
    """Every argument symbol of the compiled formulas (`metrics.ARGS`) bound to a number."""
    vals = model_values(spec) | impl_values(impl) | hardware_values(hw, impl)
    vals |= {sy.B: float(batch), sy.S: float(workload.prompt_tokens),
             sy.G: float(workload.generated_tokens), sy.M_res: float(workload.memory_reserve_bytes)}
    return vals


def estimate(
    model: ModelLike,
    hardware: HardwareLike,
    workload: Workload | None = None,
    implementation: str | Implementation = "static",
) -> Estimate:
    """Predict latency, throughput and memory of one request batch.

    `workload.batch = "max"` uses the largest batch that fits the device memory (minus
    `workload.memory_reserve_bytes`); if not even one sequence fits, batch is 1 and
    `fits` is False.
    """
    spec = resolve_model(model)
    hw = get_hardware(hardware)
    impl = get_implementation(implementation)
    workload = workload or Workload()
    check_precision(spec, impl)
    f = formulas(structure_key(spec, impl))
    vals = symbol_values(spec, hw, impl, workload, 1.0)
    pi, pi_v = vals[sy.pi], vals[sy.pi_v]
    metrics, rows = f.evaluate_all(vals)
    max_batch = int(metrics["max_batch"])
    batch = max(max_batch, 1) if workload.batch == "max" else workload.batch
    if batch != 1:
        metrics, rows = f.evaluate_all(symbol_values(spec, hw, impl, workload, batch))
    ops = []
    for row, vals in zip(f.rows, rows, strict=True):
        v = dict(zip(ROW_FIELDS, map(float, vals), strict=True))
        ops.append(OpRow(
            phase=row.phase, name=row.op, flops=v["flops"], useful_flops=v["useful_flops"],
            weight_bytes=v["weight_bytes"],
            activation_bytes=v["act_read_bytes"] + v["act_write_bytes"],
            kv_bytes=v["kv_read_bytes"] + v["kv_write_bytes"], kernels=v["kernels"],
            time_flops=v["t_math_s"] * pi - v["dequant_flops"] * pi / pi_v,
            dequant_flops=v["dequant_flops"],
            t_math_s=v["t_math_s"], t_mem_s=v["t_mem_s"], time_s=v["time_s"],
            bound=_bound(v["t_math_s"], v["t_mem_s"], v["time_s"]),
        ))
    return Estimate(
        model=spec.name, kind=spec.kind, hardware=hw.id, implementation=impl.name,
        weight_dtype=impl.weight_dtype, compute_dtype=impl.compute_dtype, kv_dtype=impl.kv_dtype,
        batch=batch,
        prompt_tokens=workload.prompt_tokens, generated_tokens=workload.generated_tokens,
        **{m: metrics[m] for m in METRICS if m != "max_batch"},
        max_batch=max_batch, fits=batch <= max_batch, ops=ops,
    )


def max_batch(model: ModelLike, memory_bytes: float, workload: Workload | None = None,
              implementation: str | Implementation = "static") -> int:
    """Largest batch whose weights, KV cache and workspace fit in `memory_bytes` (the closed
    form of `costmodel.memory`: floor((M - M_res - weights) / per-sequence memory))."""
    if not memory_bytes > 0:
        raise ValueError(f"memory_bytes: must be > 0, got {memory_bytes!r}")
    spec, impl = resolve_model(model), get_implementation(implementation)
    workload = workload or Workload()
    check_precision(spec, impl)
    f = formulas(structure_key(spec, impl))
    vals = model_values(spec) | impl_values(impl)
    vals |= {sy.B: 1.0, sy.S: float(workload.prompt_tokens),
             sy.G: float(workload.generated_tokens), sy.M_cap: float(memory_bytes),
             sy.M_res: float(workload.memory_reserve_bytes), sy.pi: 1.0, sy.beta: 1.0,
             sy.eta_ov: 1.0, sy.t_kernel: 0.0, sy.t_forward: 0.0, sy.t_generate: 0.0,
             sy.pi_v: 1.0}
    return int(f.evaluate("max_batch", vals)[0])


# --- sweeps -------------------------------------------------------------------------------------

def _as_list(x: Any) -> list:
    if isinstance(x, str | VanillaSpec | BlockSpec | Hardware | Workload) or np.isscalar(x):
        return [x]
    return list(x)


def _positive_array(name: str, values: Iterable[Any]) -> np.ndarray:
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"{name}: needs at least one value")
    if not np.all(np.isfinite(arr)) or np.any(arr < 1) or np.any(arr != np.floor(arr)):
        raise ValueError(f"{name}: every value must be a whole number >= 1")
    return arr


def sweep(
    models: ModelLike | Sequence[ModelLike],
    hardware: HardwareLike | Sequence[HardwareLike] = "h100-sxm-80gb",
    batch: int | str | Sequence[int] = 1,
    prompt_tokens: int | Sequence[int] = 2048,
    generated_tokens: int | Sequence[int] = 128,
    block_length: int | Sequence[int] | None = None,
    implementation: str | Implementation = "static",
    metrics: Sequence[str] = ("throughput_tokens_per_s", "request_time_s", "ttft_s", "tpot_s",
                              "memory_bytes_per_sample", "max_batch"),
    memory_reserve_bytes: float = 0.0,
    weight_dtype: str | Sequence[str] | None = None,
    kv_dtype: str | Sequence[str] | None = None,
    compute_dtype: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Evaluate metrics over the cartesian product of the inputs in vectorised calls.

    One row per design point: model, kind, hardware, block_length, weight_dtype, compute_dtype,
    kv_dtype, batch, prompt_tokens, generated_tokens, then the requested metrics.
    `batch="max"` uses each point's max batch. `block_length` re-blocks every Block
    Transformer model (vanilla rows ignore it). The dtypes (`costmodel.precision`; presets such
    as ``w8a16`` and ``kv-fp8`` allowed) are axes too; None keeps the implementation's.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown {unknown} (known: {', '.join(METRICS)})")
    base = get_implementation(implementation)
    impls = [base.with_precision(w, kv, c) for w, kv, c in itertools.product(
        *(_as_list(a) if a is not None else [None]
          for a in (weight_dtype, kv_dtype, compute_dtype)))]
    specs = [resolve_model(m) for m in _as_list(models)]
    hws = [get_hardware(h) for h in _as_list(hardware)]
    use_max = isinstance(batch, str)
    if use_max and batch != "max":
        raise ValueError(f"batch: expected whole numbers >= 1 or 'max', got {batch!r}")
    b_arr = np.array([1.0]) if use_max else _positive_array("batch", _as_list(batch))
    s_arr = _positive_array("prompt_tokens", _as_list(prompt_tokens))
    g_arr = _positive_array("generated_tokens", _as_list(generated_tokens))
    lb_list = None if block_length is None else list(_positive_array(
        "block_length", _as_list(block_length)).astype(int))

    parts: list[dict[str, Any]] = []
    for spec, hw, impl in itertools.product(specs, hws, impls):
        variants = [spec]
        if isinstance(spec, BlockSpec) and lb_list is not None:
            variants = [with_block_length(spec, lb) for lb in lb_list]
        for var in variants:
            check_precision(var, impl)
            parts.append(_sweep_one(var, hw, impl, b_arr, s_arr, g_arr, use_max,
                                    tuple(metrics), memory_reserve_bytes))
    return _frame(parts)


def _sweep_one(spec, hw, impl, b_arr, s_arr, g_arr, use_max, metrics, reserve) -> dict[str, Any]:
    f = formulas(structure_key(spec, impl))
    B, S, G = (a.ravel() for a in np.meshgrid(b_arr, s_arr, g_arr, indexing="ij"))
    values = model_values(spec) | impl_values(impl) | hardware_values(hw, impl)
    values |= {sy.M_res: float(reserve), sy.B: B, sy.S: S, sy.G: G}
    if use_max:
        values[sy.B] = np.maximum(f.evaluate("max_batch", values), 1.0)
    out = {"model": spec.name, "kind": spec.kind, "hardware": hw.id,
           "block_length": float(getattr(spec, "block_length", np.nan)),
           "weight_dtype": impl.weight_dtype, "compute_dtype": impl.compute_dtype,
           "kv_dtype": impl.kv_dtype, "batch": values[sy.B], "prompt_tokens": S, "generated_tokens": G}
    return out | {m: f.evaluate(m, values) for m in metrics}


_LABELS = ("model", "kind", "hardware", "block_length", "weight_dtype", "compute_dtype",
           "kv_dtype")


def _frame(parts: list[dict[str, Any]]) -> pd.DataFrame:
    """One DataFrame from per-structure parts; label columns as categoricals (cheap at 1M rows)."""
    sizes = [len(p["prompt_tokens"]) for p in parts]
    cols: dict[str, Any] = {}
    for label in _LABELS:
        values = [p[label] for p in parts]
        cats = list(dict.fromkeys(values))
        codes = np.repeat([cats.index(v) for v in values], sizes)
        if label == "block_length":
            cols[label] = np.asarray(cats, dtype=np.float64)[codes]
        else:
            cols[label] = pd.Categorical.from_codes(codes, categories=cats)
    for name in parts[0]:
        if name not in _LABELS:
            cols[name] = np.concatenate([p[name] for p in parts])
    return pd.DataFrame(cols)


# --- formulas -----------------------------------------------------------------------------------

class Formula(BaseModel, frozen=True, arbitrary_types_allowed=True):
    name: str
    kind: str
    implementation: str
    expr: Any  # sympy expression
    latex: str
    symbols: dict[str, str]  # symbol -> meaning (legend)
    impl: Implementation | None = None  # the profile with its precision (None: by name)

    def evaluate(self, model: ModelLike, hardware: HardwareLike, workload: Workload) -> float:
        spec, hw = resolve_model(model), get_hardware(hardware)
        impl = self.impl or get_implementation(self.implementation)
        batch = 1 if workload.batch == "max" else workload.batch
        vals = symbol_values(spec, hw, impl, workload, batch)
        return float(_compiled(self.expr)(*[np.float64(vals[a]) for a in ARGS]))


@functools.lru_cache(maxsize=512)
def _compiled(expr: sp.Expr):
    return sp.lambdify(ARGS, expr, "numpy")


def _legend(name: str) -> str:
    """Meaning of a symbol; stack symbols carry a _b (block decoder) or _t (token decoder)."""
    for suffix, where in (("_b", " (block decoder)"), ("_t", " (token decoder)")):
        if name.endswith(suffix) and name[: -len(suffix)] in sy.LEGEND:
            return sy.LEGEND[name[: -len(suffix)]] + where
    return sy.LEGEND.get(name, "")


def formula_names(model: ModelLike = "vanilla_410", implementation: str = "static") -> list[str]:
    """Metric names, then `<phase>/<op>/<quantity>` names of every row."""
    spec = resolve_model(model)
    f = formulas(structure_key(spec, get_implementation(implementation)))
    rows = [f"{r.phase}/{r.op}/{q}" for r in f.rows for q in (*r.quantities, "time")]
    return list(METRICS) + rows


def formula(name: str, model: ModelLike = "vanilla_410",
            implementation: str | Implementation = "static") -> Formula:
    """The sympy expression of a metric (e.g. ``"ttft_s"``) or of one row quantity
    (``"decode/layers.attn.core/kv_read_bytes"``), for the structure of `model`."""
    spec = resolve_model(model)
    impl = get_implementation(implementation)
    f = formulas(structure_key(spec, impl))
    if name in f.metrics:
        expr = f.metrics[name]
    else:
        parts = name.rsplit("/", 1)
        head = parts[0].split("/", 1) if len(parts) == 2 else []
        row = next((r for r in f.rows if len(head) == 2 and (r.phase, r.op) == tuple(head)),
                   None)
        if row is None or parts[1] not in (*row.quantities, "time"):
            raise ValueError(
                f"name: unknown formula {name!r} for a {spec.kind} model; known metrics: "
                f"{', '.join(METRICS)}; rows as '<phase>/<op>/<quantity>' "
                "(see `blockroof formula --list`)"
            )
        expr = row.time if parts[1] == "time" else row.quantities[parts[1]]
    names = {s.name for s in expr.free_symbols}
    legend = {n: _legend(n) for n in sorted(names)}
    return Formula(name=name, kind=spec.kind, implementation=impl.name, expr=expr,
                   latex=sp.latex(expr), symbols=legend, impl=impl)
