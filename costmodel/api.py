"""Python API: `estimate`, `sweep`, `formula` (the CLI and the dashboard call these).

    >>> from costmodel import estimate, Workload
    >>> est = estimate("block_main_b4_1.2b", "h100-sxm-80gb",
    ...                Workload(batch="max", prompt_tokens=2048, generated_tokens=128))
    >>> est.throughput_tokens_per_s, est.batch, est.breakdown()   # DataFrame per (phase, op)

Numbers come from the compiled formulas of `costmodel.metrics`; every numeric input is cast to
float64 at this boundary (int64 overflows silently in these formulas, docs/engineering-notes.md).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import sympy as sp
from pydantic import BaseModel, TypeAdapter, ValidationError

from . import fused
from . import symbols as sy
from .errors import UserError, finite
from .hardware import Hardware, get_hardware
from .hf_config import describe_error, read_json_file, spec_from_hf_config
from .implementation import Implementation, get_implementation
from .metrics import ARGS, METRICS, ROW_FIELDS, StructureKey, cache_generation, formulas
from .ops import QUANTITIES, ImplStructure, StackStructure
from .parallel import Parallelism, check_parallelism, get_parallelism
from .precision import check_group_size
from .presets import get_preset, with_block_length
from .spec import BlockSpec, ModelSpec, StackSpec, VanillaSpec
from .workload import DEFAULT_SWEEP_METRICS, MAX_WHOLE, Workload

ModelLike = VanillaSpec | BlockSpec | str
HardwareLike = Hardware | str


# --- binding specs, hardware and workload to the formulas' symbols ---------------------------

def resolve_model(model: ModelLike | os.PathLike, field: str = "model") -> VanillaSpec | BlockSpec:
    """A spec, a preset name or alias ("vanilla_410", "Vanilla 410M", "EleutherAI/pythia-410m"),
    or a path to a spec JSON (a dumped VanillaSpec/BlockSpec) or a Hugging Face config.json."""
    if isinstance(model, VanillaSpec | BlockSpec):
        return model
    if isinstance(model, os.PathLike) or (isinstance(model, str) and _looks_like_path(model)):
        return load_model_file(Path(model), field)
    if isinstance(model, str):
        return get_preset(model)
    raise UserError(f"{field}: expected a preset name, a .json path or a spec, got "
                    f"{type(model).__name__}")


def _looks_like_path(text: str) -> bool:
    if text.endswith(".json"):
        return True
    # "EleutherAI/pythia-410m" is an alias, not a path, unless such a file exists
    return (os.path.sep in text or "/" in text) and Path(text).exists()


def load_model_file(path: Path, field: str = "model") -> VanillaSpec | BlockSpec:
    """A spec JSON file or a Hugging Face config.json, labelled readably (`model_label`)."""
    data = read_json_file(path, field=field)
    if isinstance(data, dict) and data.get("kind") in ("vanilla", "block"):
        try:
            return TypeAdapter(ModelSpec).validate_python(data)
        except ValidationError as e:
            text = "; ".join(describe_error(err) for err in e.errors(include_url=False))
            raise UserError(f"{field} {path}: {text}") from None
    return spec_from_hf_config(data, name=model_label(path))


def model_label(path: Path) -> str:
    """A readable name for a config file: its stem, or its folder's name for `config.json`
    (".../llama-2-7b/config.json" -> "llama-2-7b")."""
    path = Path(path)
    if path.stem.lower() in ("config", "params", "spec") and path.resolve().parent.name:
        return path.resolve().parent.name
    return path.stem


def unique_labels(names: Sequence[str]) -> list[str]:
    """Names made unique by numbering repeats ("config", "config (2)"), order kept."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


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
    window = spec.stack.sliding_window if isinstance(spec, VanillaSpec) else None
    vals[sy.W] = float(window or 1)  # only windowed structures' formulas contain W
    return vals | parallel_values()


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
        raise UserError(
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
            raise UserError(f"weight_dtype: {impl.weight_dtype!r} needs an untied LM head; "
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
    decode_step_time_s: float  # one vanilla token, or one whole block of L_B tokens
    decode_step_tokens: int  # tokens one decode step emits: 1 (vanilla) or L_B (block)
    decode_time_per_token_s: float  # decode_step_time_s / decode_step_tokens: comparable
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
# matrix and vector FLOP/s, formulas cache generation: stale after formulas.cache_clear()). The entry holds its objects, so their ids stay theirs while cached; all of
# them are frozen, so the cached numbers stay right (docs/performance.md 1).
_POINTS: dict[tuple, tuple] = {}
_POINTS_MAX = 256


def _point_base(spec, hw: Hardware, impl: Implementation, par: Parallelism) -> tuple:
    key = (id(spec), id(hw), id(impl), par.tp, par.pp)
    hit = _POINTS.get(key)
    if (hit is not None and hit[0] is spec and hit[1] is hw and hit[2] is impl
            and hit[7] == cache_generation()):
        return hit
    check_precision(spec, impl)
    f = formulas(structure_key(spec, impl, par))
    vals = model_values(spec) | impl_values(impl) | hardware_values(hw, impl)
    vals |= parallel_values(par, hw, spec) | _BOUND
    entry = (spec, hw, impl, f, [float(vals[a]) for a in ARGS], vals[sy.pi], vals[sy.pi_v],
             cache_generation())
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
    _, _, _, f, base, pi, pi_v, _ = _point_base(spec, hw, impl, par)
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
    i_dq = _IDX_FIELD["dequant_flops"]
    for phase, op in f.row_labels:
        v = out[n:n + _N_FIELDS]
        n += _N_FIELDS
        ops.append(construct(
            phase=phase, name=op, flops=v[i_fl], useful_flops=v[i_uf],
            weight_bytes=v[i_wb], activation_bytes=v[i_ar] + v[i_aw],
            kv_bytes=v[i_kr] + v[i_kw], kernels=v[i_k],
            time_flops=v[i_tm] * pi - v[i_dq] * pi / pi_v, dequant_flops=v[i_dq],
            t_math_s=v[i_tm], t_mem_s=v[i_tb], time_s=v[i_t],
            bound=_bound(v[i_tm], v[i_tb], v[i_t], v[i_ct]),
            collective_bytes=v[i_cb], collective_time_s=v[i_ct],
        ))
    metrics = {m: float(x) for m, x in zip(METRICS, out, strict=False) if m != "max_batch"}
    step_tokens = spec.block_length if isinstance(spec, BlockSpec) else 1
    return Estimate.model_construct(
        model=spec.name, kind=spec.kind, hardware=hw.id, implementation=impl.name,
        weight_dtype=impl.weight_dtype, compute_dtype=impl.compute_dtype, kv_dtype=impl.kv_dtype,
        batch=batch,
        prompt_tokens=workload.prompt_tokens, generated_tokens=workload.generated_tokens,
        **metrics, max_batch=max_batch, fits=batch <= max_batch,
        decode_step_tokens=step_tokens,
        decode_time_per_token_s=metrics["decode_step_time_s"] / step_tokens,
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
            kernels, time_flops, dequant_flops, t_math_s, t_mem_s, time_s, bound,
            collective_bytes, collective_time_s) -> OpRow:
    return _trusted(OpRow, {
        "phase": phase, "name": name, "flops": flops, "useful_flops": useful_flops,
        "weight_bytes": weight_bytes, "activation_bytes": activation_bytes, "kv_bytes": kv_bytes,
        "kernels": kernels, "time_flops": time_flops, "dequant_flops": dequant_flops,
        "t_math_s": t_math_s, "t_mem_s": t_mem_s,
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
        raise UserError(f"memory_bytes: must be > 0, got {memory_bytes!r}")
    spec, impl = resolve_model(model), get_implementation(implementation)
    par = get_parallelism(parallelism)
    workload = workload or Workload()
    check_precision(spec, impl)
    f = formulas(structure_key(spec, impl, par))
    vals = model_values(spec) | impl_values(impl) | parallel_values(par, None, spec)
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
    """Whole numbers 1..MAX_WHOLE (`workload.MAX_WHOLE`: float64 holds them exactly)."""
    rule = f"{name}: every value must be a whole number from 1 to {MAX_WHOLE:.3g}"
    values = list(values)
    big = [v for v in values if isinstance(v, int | np.integer) and v > MAX_WHOLE]
    if big:  # before the cast, which would round 2^53 + 1 down to 2^53
        raise UserError(f"{rule}, got {big[0]}")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{rule}, got {values!r:.60}") from None
    if arr.size == 0:
        raise UserError(f"{name}: needs at least one value")
    if not np.all(np.isfinite(arr)) or np.any(arr < 1) or np.any(arr != np.floor(arr)) \
            or np.any(arr > MAX_WHOLE):
        bad = arr[~(np.isfinite(arr) & (arr >= 1) & (arr == np.floor(arr)) & (arr <= MAX_WHOLE))]
        raise UserError(f"{rule}, got {bad[0]:g}")
    return arr


# A sweep held in memory costs ~250 bytes per design point (13 float64 columns plus pandas'
# copies: 10^7 points took 2.5 GB). Above this, `sweep` refuses and `sweep_chunks` or
# `blockroof sweep --out FILE.parquet` stream the grid (docs/reliability.md).
MAX_SWEEP_POINTS = 10_000_000
SWEEP_CHUNK_POINTS = 1 << 20


class SweepPlan(BaseModel, frozen=True, arbitrary_types_allowed=True):
    """A validated sweep: the cartesian product it stands for, not yet evaluated."""

    # (spec, hardware, layout, implementation with its precision) per structure
    variants: list[tuple[Any, Hardware, Parallelism, Implementation]]
    implementation: Implementation  # the profile before the dtype axes
    batch: Any  # np.ndarray of batch sizes, or None for "max"
    prompt_tokens: Any  # np.ndarray
    generated_tokens: Any  # np.ndarray
    metrics: tuple[str, ...]
    memory_reserve_bytes: float

    @property
    def points_per_variant(self) -> int:
        nb = 1 if self.batch is None else len(self.batch)
        return nb * len(self.prompt_tokens) * len(self.generated_tokens)

    @property
    def points(self) -> int:
        return len(self.variants) * self.points_per_variant


def plan_sweep(
    models: ModelLike | Sequence[ModelLike],
    hardware: HardwareLike | Sequence[HardwareLike] = "h100-sxm-80gb",
    batch: int | str | Sequence[int] = 1,
    prompt_tokens: int | Sequence[int] = 2048,
    generated_tokens: int | Sequence[int] = 128,
    block_length: int | Sequence[int] | None = None,
    implementation: str | Implementation = "static",
    metrics: Sequence[str] = DEFAULT_SWEEP_METRICS,
    memory_reserve_bytes: float = 0.0,
    weight_dtype: str | Sequence[str] | None = None,
    kv_dtype: str | Sequence[str] | None = None,
    compute_dtype: str | Sequence[str] | None = None,
    *,
    parallelism: Parallelism | Sequence[Parallelism] | None = None,
) -> SweepPlan:
    """Check every input of a sweep (the arguments of `sweep`) without evaluating anything.
    `parallelism`: one layout or several (a sweep axis; docs/parallelism.md). The dtypes
    (`costmodel.precision`; presets such as ``w8a16`` and ``kv-fp8`` allowed) are axes too;
    None keeps the implementation's."""
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    if not metrics:
        raise UserError("metrics: needs at least one metric name")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UserError(f"metrics: unknown {unknown} (known: {', '.join(METRICS)})")
    reserve = finite("memory_reserve_bytes", memory_reserve_bytes, lo=0)
    impl = get_implementation(implementation)
    axes = []
    for name, axis in (("weight_dtype", weight_dtype), ("kv_dtype", kv_dtype),
                       ("compute_dtype", compute_dtype)):
        values = [None] if axis is None else _as_list(axis)
        if not values:
            raise UserError(f"{name}: needs at least one dtype (or None for the profile's)")
        axes.append(values)
    impls = [impl.with_precision(w, kv, c) for w, kv, c in itertools.product(*axes)]
    model_list, hw_list = _as_list(models), _as_list(hardware)
    if not model_list:
        raise UserError("models: needs at least one model (a preset name or a spec)")
    if not hw_list:
        raise UserError("hardware: needs at least one device (an id or a Hardware)")
    specs = [resolve_model(m) for m in model_list]
    labels = unique_labels([s.name for s in specs])
    specs = [s if s.name == n else s.model_copy(update={"name": n})
             for s, n in zip(specs, labels, strict=True)]
    if block_length is not None and not any(isinstance(s, BlockSpec) for s in specs):
        raise UserError(
            f"block_length: re-blocks Block Transformer models only, and none of "
            f"{', '.join(labels)} is one (vanilla models have no blocks)")
    hws = [get_hardware(h) for h in hw_list]
    use_max = isinstance(batch, str)
    if use_max and batch != "max":
        raise UserError(f"batch: expected whole numbers >= 1 or 'max', got {batch!r}")
    b_arr = None if use_max else _positive_array("batch", _as_list(batch))
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
    variants = []
    for spec, hw, im, par in itertools.product(specs, hws, impls, pars):
        blocked = isinstance(spec, BlockSpec) and lb_list is not None
        for var in [with_block_length(spec, lb) for lb in lb_list] if blocked else [spec]:
            check_precision(var, im)
            compute_rate(hw, im)  # the device must have the compute dtype's rate
            variants.append((var, hw, par, im))
    return SweepPlan(variants=variants, implementation=impl, batch=b_arr, prompt_tokens=s_arr,
                     generated_tokens=g_arr, metrics=tuple(metrics),
                     memory_reserve_bytes=reserve)


_LABELS = ("model", "kind", "hardware", "weight_dtype", "compute_dtype", "kv_dtype")
_INT_COLUMNS = ("batch", "prompt_tokens", "generated_tokens", "tp", "pp", "gpus")


def sweep(models: ModelLike | Sequence[ModelLike],
          hardware: HardwareLike | Sequence[HardwareLike] = "h100-sxm-80gb", *,
          max_points: int = MAX_SWEEP_POINTS, **grid: Any) -> pd.DataFrame:
    """Evaluate metrics over the cartesian product of the inputs in vectorised calls.

    `grid` takes `plan_sweep`'s keywords: batch (sizes or "max"), prompt_tokens,
    generated_tokens, block_length, implementation, metrics, memory_reserve_bytes,
    weight_dtype, kv_dtype, compute_dtype, parallelism.
    One row per design point: model, kind, hardware, block_length, weight_dtype,
    compute_dtype, kv_dtype, batch, prompt_tokens, generated_tokens, tp, pp, gpus, then the
    requested metrics. `batch="max"` uses each point's max batch.
    `block_length` re-blocks every Block Transformer model (vanilla rows ignore it).
    A grid larger than `max_points` is refused (it would not fit in memory); stream it with
    `sweep_chunks` instead.
    """
    plan = plan_sweep(models, hardware, **grid)
    if plan.points > max_points:
        raise UserError(
            f"sweep: {plan.points:,} design points exceed the in-memory limit of "
            f"{max_points:,} (about 250 bytes each); raise it with max_points=N, or stream "
            "the grid to a file with `sweep_chunks` / `blockroof sweep --out FILE.parquet`")
    n = plan.points_per_variant
    return typed_frame(_frame(plan, [(v, 0, n) for v in plan.variants]))


def sweep_chunks(plan: SweepPlan, chunk_points: int = SWEEP_CHUNK_POINTS) -> Iterator[pd.DataFrame]:
    """The rows of `plan` as DataFrames of at most `chunk_points` rows each, in order (per
    structure, then batch, prompt, generated). Memory stays bounded by one chunk."""
    n = plan.points_per_variant
    for variant in plan.variants:
        for start in range(0, n, chunk_points):
            yield _frame(plan, [(variant, start, min(start + chunk_points, n))])


def _labels(spec, hw: Hardware, impl: Implementation) -> dict[str, str]:
    return {"model": spec.name, "kind": spec.kind, "hardware": hw.id,
            "weight_dtype": impl.weight_dtype, "compute_dtype": impl.compute_dtype,
            "kv_dtype": impl.kv_dtype}


def _frame(plan: SweepPlan, pieces: list[tuple[tuple, int, int]]) -> pd.DataFrame:
    """The rows of `pieces` (a structure and a range of its flat grid indices each) as one
    DataFrame. Every column is allocated once at its final length and each structure's results
    are written into their slice, so a sweep costs one pass per column and no concatenation
    (docs/performance.md 2); the DataFrame wraps the arrays without copying them."""
    rows = sum(stop - start for _, start, stop in pieces)
    categories: dict[str, dict[str, int]] = {label: {} for label in _LABELS}
    for variant, _, _ in pieces:  # categories in order of appearance
        for label, value in _labels(variant[0], variant[1], variant[3]).items():
            categories[label].setdefault(value, len(categories[label]))
    codes = {label: np.empty(rows, np.int8 if len(c) < 128 else np.int32)
             for label, c in categories.items()}
    block_length, no_block = np.empty(rows, np.int64), np.empty(rows, bool)
    ints = {name: np.empty(rows, np.int64) for name in _INT_COLUMNS}
    fits = np.empty(rows, bool)
    values = {m: np.empty(rows, np.int64 if m == "max_batch" else np.float64)
              for m in plan.metrics}
    b_axis = np.array([1.0]) if plan.batch is None else plan.batch
    shape = (len(b_axis), len(plan.prompt_tokens), len(plan.generated_tokens))
    lo = 0
    for (spec, hw, par, impl), start, stop in pieces:
        hi = lo + stop - start
        if stop - start == shape[0] * shape[1] * shape[2]:  # the whole structure: an open grid
            B, S, G = (b_axis[:, None, None], plan.prompt_tokens[None, :, None],
                       plan.generated_tokens[None, None, :])
            grid = shape
        else:
            ib, i_s, ig = np.unravel_index(np.arange(start, stop), shape)
            B, S, G = b_axis[ib], plan.prompt_tokens[i_s], plan.generated_tokens[ig]
            grid = (hi - lo,)

        def view(column: np.ndarray, lo: int = lo, hi: int = hi,
                 grid: tuple[int, ...] = grid) -> np.ndarray:  # this structure's slice
            return column[lo:hi].reshape(grid)

        def put(column: np.ndarray, value: Any) -> None:  # broadcast into this slice
            view(column)[...] = value

        got = grid_metrics(spec, hw, impl, par, B, S, G, plan.metrics,
                           plan.memory_reserve_bytes, max_batch=plan.batch is None,
                           out={m: view(values[m]) for m in plan.metrics if m != "max_batch"})

        for label, value in _labels(spec, hw, impl).items():
            codes[label][lo:hi] = categories[label][value]
        # counts as integers; block_length empty for vanilla rows (docs/reliability.md)
        bl = getattr(spec, "block_length", None)
        block_length[lo:hi], no_block[lo:hi] = (0, True) if bl is None else (bl, False)
        for name, value in (("batch", got["_batch"]), ("prompt_tokens", S),
                            ("generated_tokens", G), ("tp", par.tp), ("pp", par.pp),
                            ("gpus", par.gpus_per_replica)):
            put(ints[name], value)
        np.less_equal(got["_batch"], got["max_batch"], out=view(fits))
        for m in plan.metrics:
            if not np.may_share_memory(got[m], values[m]):  # (else written in place)
                put(values[m], got[m])
        lo = hi
    cols: dict[str, Any] = {
        label: pd.Categorical.from_codes(codes[label], list(categories[label]), validate=False)
        for label in _LABELS}
    cols["block_length"] = pd.arrays.IntegerArray(block_length, no_block)
    order = (*_LABELS[:3], "block_length", *_LABELS[3:])  # the documented column order
    return pd.DataFrame({k: cols[k] for k in order} | ints | {"fits": fits} | values,
                        copy=False)


def grid_metrics(spec, hw: Hardware, impl: Implementation, par: Parallelism, B: Any, S: Any,
                 G: Any, metrics: Sequence[str], reserve: float, max_batch: bool = False,
                 out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """`metrics` and "max_batch" of one structure over B, S, G (flat arrays of one length, or
    an open grid that broadcasts) in one fused evaluation (costmodel.fused; docs/performance.md
    2). With `max_batch`, B is replaced by each point's max batch (at least 1). "_batch": the
    batch used. `out`: arrays by metric to write into (used where the result has their shape;
    the returned array is then that one)."""
    f = formulas(structure_key(spec, impl, par))
    values = model_values(spec) | impl_values(impl) | hardware_values(hw, impl)
    values |= parallel_values(par, hw, spec)
    values |= {sy.M_res: float(reserve), sy.B: B, sy.S: S, sy.G: G}
    (mb,) = fused.evaluate((f.metrics["max_batch"],), ARGS, values)
    if max_batch:
        values[sy.B] = np.maximum(mb, 1.0)
    names = tuple(m for m in metrics if m != "max_batch")
    got = fused.evaluate(tuple(f.metrics[m] for m in names), ARGS, values,
                         out=[(out or {}).get(m) for m in names]) if names else []
    return {"max_batch": mb, "_batch": values[sy.B]} | dict(zip(names, got, strict=True))


_WHOLE_METRICS = ("_bytes", "bytes_per_sample", "bytes_total", "flops_total")


def typed_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Byte and FLOP columns as int64 where every value is a finite whole number below 2**53
    (they are counts: CSV and JSON then show 123, not 123.0)."""
    for name in df.columns:
        if not name.endswith(_WHOLE_METRICS) or df[name].dtype != np.float64:
            continue  # (to_numpy of a label column would build a million strings)
        col = df[name].to_numpy()
        if (col.dtype == np.float64
                and np.all(np.isfinite(col)) and np.all(col == np.floor(col))
                and np.all(np.abs(col) < 2**53)):
            df[name] = col.astype(np.int64)
    return df


# --- formulas -----------------------------------------------------------------------------------

class Formula(BaseModel, frozen=True, arbitrary_types_allowed=True):
    name: str
    kind: str
    implementation: str
    expr: Any  # sympy expression
    latex: str
    symbols: dict[str, str]  # symbol -> meaning (legend)
    impl: Implementation | None = None  # the profile with its precision (None: by name)

    def evaluate(self, model: ModelLike, hardware: HardwareLike, workload: Workload,
                 parallelism: Parallelism | None = None) -> float:
        spec, hw = resolve_model(model), get_hardware(hardware)
        impl = self.impl or get_implementation(self.implementation)
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


def formula_names(model: ModelLike = "vanilla_410",
                  implementation: str | Implementation = "static", *,
                  parallelism: Parallelism | None = None) -> list[str]:
    """Metric names, then `<phase>/<op>/<quantity>` names of every row."""
    spec = resolve_model(model)
    f = formulas(structure_key(spec, get_implementation(implementation), parallelism))
    rows = [f"{phase}/{op}/{q}" for phase, op in f.row_labels for q in (*QUANTITIES, "time")]
    return list(METRICS) + rows


def formula(name: str, model: ModelLike = "vanilla_410",
            implementation: str | Implementation = "static", *,
            parallelism: Parallelism | None = None) -> Formula:
    """The sympy expression of a metric (e.g. ``"ttft_s"``) or of one row quantity
    (``"decode/layers.attn.core/kv_read_bytes"``), for the structure of `model` (sharded /
    pipelined when `parallelism` has tp / pp > 1: ``decode/layers.attn.allreduce/time``)."""
    if not isinstance(name, str):
        raise UserError(f"name: expected a formula name (str), got {type(name).__name__} "
                        f"{name!r} (see `blockroof formula --list`)")
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
            raise UserError(
                f"name: unknown formula {name!r} for a {spec.kind} model; known metrics: "
                f"{', '.join(METRICS)}; rows as '<phase>/<op>/<quantity>' "
                "(see `blockroof formula --list`)"
            )
        expr = row.time if parts[1] == "time" else row.quantities[parts[1]]
    names = {s.name for s in expr.free_symbols}
    legend = {n: _legend(n) for n in sorted(names)}
    return Formula(name=name, kind=spec.kind, implementation=impl.name, expr=expr,
                   latex=sp.latex(expr), symbols=legend, impl=impl)
