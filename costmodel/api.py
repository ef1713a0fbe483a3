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

from . import fused
from . import symbols as sy
from .errors import UserError
from .hardware import Hardware, get_hardware
from .implementation import Implementation, get_implementation
from .metrics import ARGS, METRICS, ROW_FIELDS, StructureKey, formulas
from .ops import ImplStructure, StackStructure
from .parallel import Parallelism, check_parallelism, get_parallelism
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


def structure_key(spec: VanillaSpec | BlockSpec, impl: Implementation,
                  parallelism: Parallelism | None = None) -> StructureKey:
    im = ImplStructure.of(impl)
    par = get_parallelism(parallelism)
    flags = {"sharded": par.sharded, "pipelined": par.pipelined}
    if isinstance(spec, VanillaSpec):
        return StructureKey("vanilla", (StackStructure.of(spec.stack),), im, spec.tie_embeddings,
                            **flags)
    return StructureKey("block", (StackStructure.of(spec.block_decoder),
                                  StackStructure.of(spec.token_decoder)), im,
                        unused_embedding=impl.allocates_unused_block_embedding, **flags)


def parallel_values(parallelism: Parallelism | None = None, hw: Hardware | None = None,
                    spec: VanillaSpec | BlockSpec | None = None) -> dict[sp.Symbol, float]:
    """tp, pp and the interconnect (beta_link, alpha_link) of `hw`.

    Without parallelism the values are neutral (tp = pp = 1; formulas of such structures do
    not contain the link symbols). tp > 1 or pp > 1 needs a device with interconnect figures.
    Raises UserError naming the field and the rule (costmodel.parallel).
    """
    par = get_parallelism(parallelism)
    vals = {sy.tp: float(par.tp), sy.pp: float(par.pp), sy.beta_link: 1.0, sy.alpha_link: 0.0}
    if spec is not None:
        check_parallelism(spec, par)
    if par.gpus_per_replica > 1 and hw is not None:
        if hw.interconnect_GBps_per_direction is None or hw.interconnect_latency_us is None:
            raise UserError(
                f"hardware: {hw.id} has no interconnect figures (interconnect_GBps_per_direction"
                f" and interconnect_latency_us), so tp/pp > 1 cannot be modelled on it")
        vals[sy.beta_link] = hw.interconnect_GBps_per_direction * 1e9
        vals[sy.alpha_link] = hw.interconnect_latency_us * 1e-6
    return vals


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
    return vals | parallel_values()


def hardware_values(hw: Hardware, impl: Implementation) -> dict[sp.Symbol, float]:
    return {
        sy.pi: hw.compute_flops_per_s(impl.compute_dtype),
        sy.beta: hw.bandwidth_bytes_per_s(),
        sy.eta_ov: float(hw.efficiency.overlap),
        sy.t_kernel: float(hw.efficiency.kernel_overhead_s),
        sy.t_forward: float(hw.efficiency.forward_overhead_s),
        sy.M_cap: hw.capacity_bytes(),
        sy.t_generate: float(hw.efficiency.generate_call_overhead_s),
    }


def impl_values(impl: Implementation) -> dict[sp.Symbol, float]:
    return {sy.s_w: float(impl.weight_bytes_per_element),
            sy.s_a: float(impl.activation_bytes_per_element),
            sy.s_kv: float(impl.kv_bytes_per_element)}


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
    t_math_s: float
    t_mem_s: float
    time_s: float
    bound: Literal["compute", "memory", "overhead", "none", "network"]
    collective_bytes: float = 0.0  # tensor bytes handed to collectives (per rank)
    collective_time_s: float = 0.0

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
    # parallelism (docs/parallelism.md): one replica spans gpus = tp x pp devices
    tp: int = 1
    pp: int = 1
    gpus: int = 1
    weights_bytes_per_gpu: float = 0.0
    memory_bytes_per_gpu: float = 0.0
    collective_bytes_total: float = 0.0  # all ranks' sends over the request
    collective_time_s: float = 0.0  # on one rank's path
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


def _bound(t_math: float, t_mem: float, time: float, t_comm: float = 0.0) -> str:
    if t_comm > 0 and t_comm >= max(t_math, t_mem):
        return "network"
    if t_math == 0 and t_mem == 0:
        return "overhead" if time > 0 else "none"
    return "compute" if t_math >= t_mem else "memory"


def symbol_values(spec: VanillaSpec | BlockSpec, hw: Hardware, impl: Implementation,
                  workload: Workload, batch: float,
                  parallelism: Parallelism | None = None) -> dict[sp.Symbol, float]:
    """Every argument symbol of the compiled formulas (`metrics.ARGS`) bound to a number."""
    vals = model_values(spec) | impl_values(impl) | hardware_values(hw, impl)
    vals |= parallel_values(parallelism, hw, spec)
    vals |= {sy.B: float(batch), sy.S: float(workload.prompt_tokens),
             sy.G: float(workload.generated_tokens), sy.M_res: float(workload.memory_reserve_bytes)}
    return vals


_IDX_B, _IDX_S, _IDX_G, _IDX_RES = (ARGS.index(x) for x in (sy.B, sy.S, sy.G, sy.M_res))
_IDX_FIELD = {name: i for i, name in enumerate(ROW_FIELDS)}
_N_METRICS, _N_FIELDS = len(METRICS), len(ROW_FIELDS)
_BOUND = {sy.B: float("nan"), sy.S: float("nan"), sy.G: float("nan"), sy.M_res: float("nan")}

# (id(spec), id(hw), id(impl), tp, pp) -> (spec, hw, impl, formulas, args at B=S=G=M_res=nan,
# compute FLOP/s). The entry holds its objects, so their ids stay theirs while cached; all of
# them are frozen, so the cached numbers stay right (docs/performance.md 1).
_POINTS: dict[tuple, tuple] = {}
_POINTS_MAX = 256


def _point_base(spec, hw: Hardware, impl: Implementation, par: Parallelism) -> tuple:
    key = (id(spec), id(hw), id(impl), par.tp, par.pp)
    hit = _POINTS.get(key)
    if hit is not None and hit[0] is spec and hit[1] is hw and hit[2] is impl:
        return hit
    f = formulas(structure_key(spec, impl, par))
    vals = model_values(spec) | impl_values(impl) | hardware_values(hw, impl)
    vals |= parallel_values(par, hw, spec) | _BOUND
    entry = (spec, hw, impl, f, [float(vals[a]) for a in ARGS], hw.compute_flops_per_s(
        impl.compute_dtype))
    if len(_POINTS) >= _POINTS_MAX:
        _POINTS.clear()
    _POINTS[key] = entry
    return entry


def estimate(
    model: ModelLike,
    hardware: HardwareLike,
    workload: Workload | None = None,
    implementation: str | Implementation = "static",
    *,
    parallelism: Parallelism | None = None,
) -> Estimate:
    """Predict latency, throughput and memory of one request batch.

    `workload.batch = "max"` uses the largest batch that fits the device memory (minus
    `workload.memory_reserve_bytes`); if not even one sequence fits, batch is 1 and
    `fits` is False. With `parallelism` the batch is per replica, the memory limit per GPU,
    and per-op rows are one rank's (docs/parallelism.md).

    One evaluation of the compiled point function per call (two with batch "max"), on a cached
    argument vector; results are built without re-validation from numbers that are already
    floats (docs/performance.md 1).
    """
    spec = resolve_model(model)
    hw = get_hardware(hardware)
    impl = get_implementation(implementation)
    par = _NO_PARALLELISM if parallelism is None else get_parallelism(parallelism)
    workload = workload or Workload()
    _, _, _, f, base, pi = _point_base(spec, hw, impl, par)
    args = base.copy()
    args[_IDX_S] = float(workload.prompt_tokens)
    args[_IDX_G] = float(workload.generated_tokens)
    args[_IDX_RES] = float(workload.memory_reserve_bytes)
    if workload.batch == "max":
        # the max batch does not depend on B (tests/test_engine.py): read it at B = 1
        args[_IDX_B] = 1.0
        out = f.evaluate_point(args)
        max_batch = int(out[_MAX_BATCH])
        batch = max(max_batch, 1)
        if batch != 1:
            args[_IDX_B] = float(batch)
            out = f.evaluate_point(args)
    else:
        batch = workload.batch
        args[_IDX_B] = float(batch)
        out = f.evaluate_point(args)
        max_batch = int(out[_MAX_BATCH])
    construct = _op_row
    ops = []
    n = _N_METRICS
    i_fl, i_uf, i_wb = _IDX_FIELD["flops"], _IDX_FIELD["useful_flops"], _IDX_FIELD["weight_bytes"]
    i_ar, i_aw = _IDX_FIELD["act_read_bytes"], _IDX_FIELD["act_write_bytes"]
    i_kr, i_kw = _IDX_FIELD["kv_read_bytes"], _IDX_FIELD["kv_write_bytes"]
    i_k, i_tm, i_tb = _IDX_FIELD["kernels"], _IDX_FIELD["t_math_s"], _IDX_FIELD["t_mem_s"]
    i_t, i_cb, i_ct = _IDX_FIELD["time_s"], _IDX_FIELD["comm_bytes"], _IDX_FIELD["comm_time"]
    for row in f.rows:
        v = out[n:n + _N_FIELDS]
        n += _N_FIELDS
        ops.append(construct(
            phase=row.phase, name=row.op, flops=v[i_fl], useful_flops=v[i_uf],
            weight_bytes=v[i_wb], activation_bytes=v[i_ar] + v[i_aw],
            kv_bytes=v[i_kr] + v[i_kw], kernels=v[i_k], time_flops=v[i_tm] * pi,
            t_math_s=v[i_tm], t_mem_s=v[i_tb], time_s=v[i_t],
            bound=_bound(v[i_tm], v[i_tb], v[i_t], v[i_ct]),
            collective_bytes=v[i_cb], collective_time_s=v[i_ct],
        ))
    metrics = {m: float(x) for m, x in zip(METRICS, out, strict=False) if m != "max_batch"}
    return Estimate.model_construct(
        model=spec.name, kind=spec.kind, hardware=hw.id, implementation=impl.name, batch=batch,
        prompt_tokens=workload.prompt_tokens, generated_tokens=workload.generated_tokens,
        **metrics, max_batch=max_batch, fits=batch <= max_batch,
        tp=par.tp, pp=par.pp, gpus=par.gpus_per_replica, ops=ops,
    )


def _trusted(cls: type[BaseModel], fields: dict[str, Any]) -> Any:
    """An instance of `cls` from `fields` already of the right types, given in the model's field
    order with every field present: what `model_construct` does, without its per-field loop
    (~6 us of 7 per OpRow). tests/test_engine.py checks it equals the validated construction."""
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", fields)
    object.__setattr__(obj, "__pydantic_fields_set__", set(fields))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def _op_row(*, phase, name, flops, useful_flops, weight_bytes, activation_bytes, kv_bytes,
            kernels, time_flops, t_math_s, t_mem_s, time_s, bound, collective_bytes,
            collective_time_s) -> OpRow:
    return _trusted(OpRow, {
        "phase": phase, "name": name, "flops": flops, "useful_flops": useful_flops,
        "weight_bytes": weight_bytes, "activation_bytes": activation_bytes, "kv_bytes": kv_bytes,
        "kernels": kernels, "time_flops": time_flops, "t_math_s": t_math_s, "t_mem_s": t_mem_s,
        "time_s": time_s, "bound": bound, "collective_bytes": collective_bytes,
        "collective_time_s": collective_time_s})


_MAX_BATCH = METRICS.index("max_batch")
_NO_PARALLELISM = Parallelism()


def max_batch(model: ModelLike, memory_bytes: float, workload: Workload | None = None,
              implementation: str | Implementation = "static", *,
              parallelism: Parallelism | None = None) -> int:
    """Largest batch whose weights, KV cache and workspace fit in `memory_bytes` (the closed
    form of `costmodel.memory`: floor((M - M_res - weights) / per-sequence memory)). With
    `parallelism`: per replica, `memory_bytes` being one GPU's memory."""
    if not memory_bytes > 0:
        raise ValueError(f"memory_bytes: must be > 0, got {memory_bytes!r}")
    spec, impl = resolve_model(model), get_implementation(implementation)
    par = get_parallelism(parallelism)
    workload = workload or Workload()
    f = formulas(structure_key(spec, impl, par))
    vals = model_values(spec) | impl_values(impl) | parallel_values(par, None, spec)
    vals |= {sy.B: 1.0, sy.S: float(workload.prompt_tokens),
             sy.G: float(workload.generated_tokens), sy.M_cap: float(memory_bytes),
             sy.M_res: float(workload.memory_reserve_bytes), sy.pi: 1.0, sy.beta: 1.0,
             sy.eta_ov: 1.0, sy.t_kernel: 0.0, sy.t_forward: 0.0, sy.t_generate: 0.0}
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
    *,
    parallelism: Parallelism | Sequence[Parallelism] | None = None,
) -> pd.DataFrame:
    """Evaluate metrics over the cartesian product of the inputs in vectorised calls.

    One row per design point: model, kind, hardware, block_length, batch, prompt_tokens,
    generated_tokens, tp, pp, gpus, then the requested metrics. `batch="max"` uses each
    point's max batch. `block_length` re-blocks every Block Transformer model (vanilla rows
    ignore it). `parallelism`: one layout or several (a sweep axis; docs/parallelism.md).
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown {unknown} (known: {', '.join(METRICS)})")
    impl = get_implementation(implementation)
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

    if parallelism is None or isinstance(parallelism, Parallelism):
        pars = [get_parallelism(parallelism)]
    else:
        pars = [get_parallelism(p) for p in parallelism]
    if not pars:
        raise UserError("parallelism: needs at least one layout")
    parts: list[dict[str, Any]] = []
    for spec, hw, par in itertools.product(specs, hws, pars):
        variants = [spec]
        if isinstance(spec, BlockSpec) and lb_list is not None:
            variants = [with_block_length(spec, lb) for lb in lb_list]
        for var in variants:
            parts.append(_sweep_one(var, hw, impl, b_arr, s_arr, g_arr, use_max,
                                    tuple(metrics), memory_reserve_bytes, par))
    return _frame(parts)


def _sweep_one(spec, hw, impl, b_arr, s_arr, g_arr, use_max, metrics, reserve,
               par: Parallelism) -> dict[str, Any]:
    """One structure's points: batch x prompt x generated as an open grid (fused.evaluate)."""
    f = formulas(structure_key(spec, impl, par))
    B, S, G = b_arr[:, None, None], s_arr[None, :, None], g_arr[None, None, :]
    shape = (len(b_arr), len(s_arr), len(g_arr))
    values = model_values(spec) | impl_values(impl) | hardware_values(hw, impl)
    values |= parallel_values(par, hw, spec)
    values |= {sy.M_res: float(reserve), sy.B: B, sy.S: S, sy.G: G}
    if use_max:
        (mb,) = fused.evaluate((f.metrics["max_batch"],), ARGS, values)
        values[sy.B] = np.maximum(mb, 1.0)
    got = fused.evaluate(tuple(f.metrics[m] for m in metrics), ARGS, values)
    # columns broadcastable to `shape`; _frame writes each once into the flat result, in C
    # order (= meshgrid "ij", batch slowest)
    out = {"model": spec.name, "kind": spec.kind, "hardware": hw.id,
           "block_length": float(getattr(spec, "block_length", np.nan)), "_shape": shape,
           "batch": values[sy.B], "prompt_tokens": S, "generated_tokens": G,
           "tp": float(par.tp), "pp": float(par.pp), "gpus": float(par.gpus_per_replica)}
    return out | dict(zip(metrics, got, strict=True))


_LABELS = ("model", "kind", "hardware", "block_length")


def _frame(parts: list[dict[str, Any]]) -> pd.DataFrame:
    """One DataFrame from per-structure parts (columns broadcastable to the part's "_shape");
    label columns as categoricals (cheap at 1M rows). Each value is copied once, into columns
    the frame then owns without a further copy or consolidation (docs/performance.md 2)."""
    sizes = [int(np.prod(p["_shape"])) for p in parts]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    cols: dict[str, Any] = {}
    for label in _LABELS:
        values = [p[label] for p in parts]
        cats = list(dict.fromkeys(values))
        codes = np.repeat(np.array([cats.index(v) for v in values], dtype=np.int32), sizes)
        if label == "block_length":
            cols[label] = np.asarray(cats, dtype=np.float64)[codes]
        else:
            cols[label] = pd.Categorical.from_codes(codes, categories=cats)
    for name in parts[0]:
        if name in _LABELS or name == "_shape":
            continue
        col = np.empty(int(bounds[-1]), dtype=np.float64)
        for p, lo, hi in zip(parts, bounds[:-1], bounds[1:], strict=True):
            col[lo:hi].reshape(p["_shape"])[...] = p[name]
        cols[name] = col
    return pd.DataFrame(cols, copy=False)


# --- formulas -----------------------------------------------------------------------------------

class Formula(BaseModel, frozen=True, arbitrary_types_allowed=True):
    name: str
    kind: str
    implementation: str
    expr: Any  # sympy expression
    latex: str
    symbols: dict[str, str]  # symbol -> meaning (legend)

    def evaluate(self, model: ModelLike, hardware: HardwareLike, workload: Workload,
                 parallelism: Parallelism | None = None) -> float:
        spec, hw = resolve_model(model), get_hardware(hardware)
        impl = get_implementation(self.implementation)
        batch = 1 if workload.batch == "max" else workload.batch
        vals = symbol_values(spec, hw, impl, workload, batch, parallelism)
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


def formula_names(model: ModelLike = "vanilla_410", implementation: str = "static", *,
                  parallelism: Parallelism | None = None) -> list[str]:
    """Metric names, then `<phase>/<op>/<quantity>` names of every row."""
    spec = resolve_model(model)
    f = formulas(structure_key(spec, get_implementation(implementation), parallelism))
    rows = [f"{r.phase}/{r.op}/{q}" for r in f.rows for q in (*r.quantities, "time")]
    return list(METRICS) + rows


def formula(name: str, model: ModelLike = "vanilla_410",
            implementation: str | Implementation = "static", *,
            parallelism: Parallelism | None = None) -> Formula:
    """The sympy expression of a metric (e.g. ``"ttft_s"``) or of one row quantity
    (``"decode/layers.attn.core/kv_read_bytes"``), for the structure of `model` (sharded /
    pipelined when `parallelism` has tp / pp > 1: ``decode/layers.attn.allreduce/time``)."""
    spec = resolve_model(model)
    impl = get_implementation(implementation)
    f = formulas(structure_key(spec, impl, parallelism))
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
                   latex=sp.latex(expr), symbols=legend)
