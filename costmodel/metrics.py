"""Metric formulas of a whole request, built once per model structure and compiled once.

`formulas(key)` returns a `Formulas` object: the (phase, op) rows of `costmodel.roofline`, the
metric expressions below, and cached `lambdify`'d numpy functions over one fixed argument list
(`ARGS`), so a sweep over a million design points is one vectorised call (docs/engineering-notes.md, sympy).

Metrics (SI units):
- ``ttft_s``: time to first token. Vanilla: the prefill. Block: prefill, expansion and the
  token decoder's first prefix pass.
- ``request_time_s``: the whole request, prefill included (what the paper times, docs/model.md 6).
- ``tpot_s``: (request - TTFT) / (G - 1), per generated token after the first.
- ``throughput_tokens_per_s``: B * G / request time (docs/model.md 6.5: generated tokens only).
- ``decode_step_time_s``: one decode step at the prompt's context: one token (vanilla), one
  whole block of L_B tokens (block: embedder, block-decoder step, prefix pass, L_B - 1 steps).
- ``compute_bound_batch``: batch at which that decode step's T_math reaches its T_mem
  (infinite when it never does).
- ``kv_overtakes_weights_context``: cached context (tokens) past which a decode step reads
  more KV-cache bytes than weight bytes.
- memory terms of `costmodel.memory`; ``flops_total`` etc. sum the rows.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import warnings
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import sympy as sp

from . import formula_cache
from . import symbols as sy
from .formula_cache import function_from_source
from .memory import block_memory, vanilla_memory
from .ops import QUANTITIES, ImplStructure, StackStructure, stack_ops
from .phases import Phase, block_phases, vanilla_phases, vanilla_step_context
from .roofline import Row, phase_rows, request_rows, ttft_expr

ARGS: tuple[sp.Symbol, ...] = (
    *sy.WORKLOAD_SYMBOLS, sy.V, sy.L_B, sy.P, *sy.VANILLA, *sy.BLOCK_DEC, *sy.TOKEN_DEC,
    *sy.BYTES_SYMBOLS, *sy.HARDWARE_SYMBOLS, *sy.PARALLEL_SYMBOLS, *sy.WINDOW_SYMBOLS,
    *sy.PRECISION_SYMBOLS,
)

METRICS: tuple[str, ...] = (
    "ttft_s", "tpot_s", "request_time_s", "throughput_tokens_per_s", "decode_step_time_s",
    "weights_bytes", "kv_cache_bytes_per_sample", "workspace_bytes_per_sample",
    "memory_bytes_per_sample", "memory_bytes_total", "max_batch", "flops_total",
    "useful_flops_total", "weight_bytes_total", "activation_bytes_total", "kv_bytes_total",
    "compute_bound_batch", "kv_overtakes_weights_context",
    "weights_bytes_per_gpu", "memory_bytes_per_gpu", "collective_bytes_total", "collective_time_s",
)


class StructureKey(NamedTuple):
    kind: str
    stacks: tuple[StackStructure, ...]
    impl: ImplStructure
    tied: bool = False
    unused_embedding: bool = False
    sharded: bool = False  # tensor parallel (tp > 1): symbol tp in the ops, collectives added
    pipelined: bool = False  # pp > 1: stage sends and the pipeline schedule (docs/parallelism.md 2)


def _step_lists(key: StructureKey) -> tuple[list[Phase], list[Any], sp.Symbol, sp.Expr]:
    """One decode step (phases), plus ops at a free cache context for the KV-crossover.

    Returns (phases of one step at the prompt's context, ops at context `cc`, cc, tokens per
    unit of cc).
    """
    cc = sp.Symbol("c_cross", nonnegative=True)
    tp, pp = _degrees(key)
    if key.kind == "vanilla":
        (_, decode, *_) = vanilla_phases(key.stacks[0], key.impl, tp, pp)
        # the step right after the prompt (at most W - 1 cached entries with a window)
        at = vanilla_step_context(key.stacks[0])
        one = [replace(decode, lo=at, hi=at)]
        ops = stack_ops("", key.stacks[0], key.impl, sy.VANILLA, sy.B, sp.Integer(1), cc,
                        embed=True, head_rows=sp.Integer(1), tp=tp)
        return one, ops, cc, sp.Integer(1)
    _, bstep, prefix, tstep_full, _ = block_phases(*key.stacks, key.impl, tp, pp)
    one = [replace(bstep, lo=sp.Integer(1), hi=sp.Integer(1)), replace(prefix, repeat=1),
           replace(tstep_full, repeat=1)]
    ops = stack_ops("block_decoder.", key.stacks[0], key.impl, sy.BLOCK_DEC, sy.B,
                    sp.Integer(1), cc, embed=False, head_rows=None, tp=tp)
    # the rest of the block's decode does not depend on the block context
    rest = [r for p in one[1:] for r in phase_rows(p)]
    return one, ops + rest, cc, sy.L_B


def _sum(rows: list[Row], name: str) -> sp.Expr:
    return sum((r.quantities[name] for r in rows), sp.Integer(0))


def _quantity(obj: Any, name: str) -> sp.Expr:
    if hasattr(obj, "quantities"):
        return obj.quantities[name]
    return getattr(obj, name)


def _degrees(key: StructureKey) -> tuple[sp.Symbol | None, sp.Symbol | None]:
    return (sy.tp if key.sharded else None), (sy.pp if key.pipelined else None)


def _build(key: StructureKey) -> tuple[list[Row], dict[str, sp.Expr]]:
    tp, pp = _degrees(key)
    if key.kind == "vanilla":
        phases = vanilla_phases(key.stacks[0], key.impl, tp, pp)
        mem = vanilla_memory(key.stacks[0], key.impl, key.tied, tp, pp)
    else:
        phases = block_phases(*key.stacks, key.impl, tp, pp)
        mem = block_memory(*key.stacks, key.impl, key.unused_embedding, tp, pp)
    rows = request_rows(phases)
    request = sum((r.time for r in rows), sp.Integer(0))
    ttft = ttft_expr(rows)
    step_phases, cross_ops, cc, tokens_per_cc = _step_lists(key)
    step_rows = request_rows(step_phases)
    step_time = sum((r.time for r in step_rows), sp.Integer(0))
    if key.pipelined:
        # up to the first token a one-way pass, then the cyclic decode (docs/parallelism.md 2)
        ttft = pipeline_time(key.kind, rows, _ttft_share, cyclic=False)
        request = ttft + pipeline_time(key.kind, rows, lambda r: r.time - _ttft_share(r),
                                       cyclic=True)
        step_time = pipeline_time(key.kind, step_rows, lambda r: r.time, cyclic=True)

    # compute-bound batch: T_math = t0 + B f / pi (t0: weight dequantisation, batch-free),
    # T_mem = (W + B m) / beta
    step_tmath = sp.expand(sum((r.t_math for r in step_rows), sp.Integer(0)))
    step_bytes = sp.expand(sum((r.t_mem for r in step_rows), sp.Integer(0)) * sy.beta)
    f = sp.diff(step_tmath * sy.pi, sy.B)
    m = sp.diff(step_bytes, sy.B)
    w = step_bytes.subs(sy.B, 0) - step_tmath.subs(sy.B, 0) * sy.beta
    excess = f * sy.beta / sy.pi - m
    bound_batch = sp.Piecewise((sp.Max(0, w) / excess, excess > 0), (sp.oo, True))

    # KV bytes vs weight bytes of one step at cache context cc
    kv = sp.expand(sum((_quantity(o, "kv_read_bytes") + _quantity(o, "kv_write_bytes")
                        for o in cross_ops), sp.Integer(0)))
    wb = sum((_quantity(o, "weight_bytes") for o in cross_ops), sp.Integer(0))
    slope = sp.diff(kv, cc)
    cross = sp.Max(0, (wb - kv.subs(cc, 0)) / slope) * tokens_per_cc
    if key.kind == "vanilla" and key.stacks[0].sliding_window:
        # KV reads stop growing at the window: past W - 1 cached entries they never overtake
        cross = sp.Piecewise((cross, cross <= sy.W - 1), (sp.oo, True))

    metrics = {
        "ttft_s": ttft,
        "request_time_s": request,
        "tpot_s": (request - ttft) / sp.Max(sy.G - 1, 1),
        "throughput_tokens_per_s": sy.B * sy.G / request,
        "decode_step_time_s": step_time,
        **mem,
        "flops_total": _sum(rows, "flops"),
        "useful_flops_total": _sum(rows, "useful_flops"),
        "weight_bytes_total": _sum(rows, "weight_bytes"),
        "activation_bytes_total": _sum(rows, "act_read_bytes") + _sum(rows, "act_write_bytes"),
        "kv_bytes_total": _sum(rows, "kv_read_bytes") + _sum(rows, "kv_write_bytes"),
        "compute_bound_batch": bound_batch,
        "kv_overtakes_weights_context": cross,
        "collective_bytes_total": _sum(rows, "comm_sent_bytes"),
        "collective_time_s": _sum(rows, "comm_time"),
    }
    return rows, metrics


def _ttft_share(r: Row) -> sp.Expr:
    return r.time if r.ttft == "all" else (r.time * r.repeat_share if r.ttft == "one" else 0)


def _stage(kind: str, r: Row) -> str:
    """Where a row runs in the pipeline (docs/parallelism.md 2): vanilla 'pre' (first stage),
    'layer' (split over the stages), 'post' (last stage), 'send', 'fwd' (every stage);
    block '0' (block decoder) or '1' (token decoder), 'send', 'fwd0'/'fwd1'."""
    if r.op.endswith(".send"):
        return "send"
    if kind == "vanilla":
        if r.op == "(forward calls)":
            return "fwd"
        if r.op.startswith("embed_in"):
            return "pre"
        return "layer" if r.op.startswith("layers") else "post"
    if r.op == "(forward calls)":
        return "fwd0" if r.phase in ("prefill", "block_decoder.step") else "fwd1"
    return "0" if r.op.startswith(("embedder", "block_decoder.")) else "1"


def pipeline_time(kind: str, rows: list[Row], time_of, cyclic: bool) -> sp.Expr:
    """Time of `rows` on a pipeline of pp stages with m = min(B, pp) micro-batches of B/m
    sequences (docs/parallelism.md 2). sum: one micro-batch's serial path through every stage
    and send; slowest: the busiest stage per micro-batch. Decode (cyclic: the next token needs
    the last stage's output) takes max(sum, m * slowest); a one-way pass (the prefill up to the
    first token) takes sum + (m - 1) * slowest (the last micro-batch's wait)."""
    m = sp.Min(sy.B, sy.pp)
    # evaluate=False: sympy would otherwise try to order these large sums (tens of seconds)
    mx = functools.partial(sp.Max, evaluate=False)
    per: dict[str, sp.Expr] = {}
    for r in rows:
        with sp.evaluate(False):  # plain substitution, no re-simplification (seconds saved)
            t = sp.sympify(time_of(r)).xreplace({sy.B: sy.B / m})
        per[_stage(kind, r)] = per.get(_stage(kind, r), sp.Integer(0)) + t
    g = lambda name: per.get(name, sp.Integer(0))  # noqa: E731
    if kind == "vanilla":
        N = sy.VANILLA.N
        one_send = g("send") / (sy.pp - 1)
        total = g("pre") + g("layer") + g("post") + g("send") + sy.pp * g("fwd")
        first = g("pre") + sp.ceiling(N / sy.pp) * g("layer") / N + one_send + g("fwd")
        last = sp.floor(N / sy.pp) * g("layer") / N + g("post") + g("fwd")
        slowest = mx(first, last)
    else:
        s0, s1 = g("0") + g("fwd0"), g("1") + g("fwd1")
        total = s0 + s1 + g("send")
        slowest = mx(s0 + g("send"), s1)
    if cyclic:
        return mx(total, m * slowest)
    return total + (m - 1) * slowest


ROW_FIELDS = (*QUANTITIES, "t_math_s", "t_mem_s", "time_s")


class Formulas:
    """The formulas of one model structure: row labels, compiled functions, sympy expressions.

    Made by `formulas(key)`, from the disk cache (`costmodel.formula_cache`) when it holds this
    structure at this code version, else built with sympy and stored. The sympy `rows` and
    `metrics` are loaded only when used; numbers need only the compiled functions.
    """

    def __init__(self, key: StructureKey, row_labels: list[tuple[str, str]],
                 sources: dict[str, str], exprs: Any) -> None:
        self.key = key
        self.row_labels = row_labels  # (phase, op) of every row, in order
        self._sources = sources  # "*all*" and every metric name -> lambdify's source
        self._exprs = exprs  # (rows, metrics), or a callable that returns them
        self._fns: dict[str, Any] = {}
        self._lock = threading.RLock()

    @classmethod
    def build(cls, key: StructureKey) -> Formulas:
        rows, metrics = _build(key)
        everything = _all_exprs(rows, metrics)
        sources = {ALL: _source(everything), POINT: _point_source(everything)}
        sources |= {m: _source(metrics[m]) for m in METRICS}
        return cls(key, [(r.phase, r.op) for r in rows], sources, (rows, metrics))

    def _expressions(self) -> tuple[list[Row], dict[str, sp.Expr]]:
        with self._lock:
            if callable(self._exprs):
                self._exprs = self._exprs()
            return self._exprs

    @property
    def rows(self) -> list[Row]:
        return self._expressions()[0]

    @property
    def metrics(self) -> dict[str, sp.Expr]:
        return self._expressions()[1]

    def _fn(self, name: str):
        fn = self._fns.get(name)
        if fn is None:
            with self._lock:
                fn = self._fns.get(name)
                if fn is None:
                    fn = self._fns[name] = function_from_source(self._sources[name])
        return fn

    @property
    def all_fn(self):
        """f(*ARGS) -> [metrics..., row fields...] in METRICS then ROW_FIELDS order."""
        return self._fn(ALL)

    def metric_fn(self, name: str):
        """Compiled f(*ARGS) for one metric."""
        return self._fn(name)

    def evaluate(self, name: str, values: dict[sp.Symbol, Any], chunk: int = 1 << 14) -> np.ndarray:
        """Vectorised metric over array-valued `values` (1-D arrays of one length or scalars).

        Evaluated in chunks that stay in the CPU cache: ~5x faster than one pass over 1M points.
        """
        fn = self.metric_fn(name)
        args = [values[a] for a in ARGS]
        n = max((np.size(a) for a in args), default=1)
        out = np.empty(n, dtype=np.float64)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for lo in range(0, n, chunk):
                part = [a[lo:lo + chunk] if np.ndim(a) else a for a in args]
                out[lo:lo + chunk] = fn(*part)
        return out

    @property
    def point_fn(self):
        """`all_fn` compiled for one point of Python floats (the `math` module, no numpy):
        ~10x less call overhead than numpy on scalars (docs/performance.md 1). Its source is
        stored with the others (disk cache); built from the expressions if missing."""
        fn = self._fns.get(POINT)
        if fn is None:
            with self._lock:
                if POINT not in self._sources:
                    rows, metrics = self._expressions()
                    self._sources[POINT] = _point_source(_all_exprs(rows, metrics))
                fn = self._fns[POINT] = _point_function(self._sources[POINT])
        return fn

    def evaluate_point(self, args: list[float]) -> list[float]:
        """[metrics..., row fields...] (METRICS then ROW_FIELDS per row) at one point, `args`
        in ARGS order. Plain Python floats follow the same IEEE double arithmetic as numpy's
        float64 scalars; where they would differ (a division by zero, an overflow raised, a
        NaN that Python's max/min would not propagate) the point is evaluated by the numpy
        function instead, so the numbers are those of `all_fn` either way."""
        try:
            out = self.point_fn(*args)
            total = sum(out)
            if total == total:  # no NaN (an inf - inf here only costs the numpy path)
                return list(map(float, out))
        except (ZeroDivisionError, OverflowError, ValueError):
            pass
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self.all_fn(*[np.float64(a) for a in args])
        return [float(v) for v in out]

    def evaluate_all(self, values: dict[sp.Symbol, float]) -> tuple[dict[str, float], np.ndarray]:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self.all_fn(*[np.float64(values[a]) for a in ARGS])
        metrics = {m: float(v) for m, v in zip(METRICS, out[: len(METRICS)], strict=True)}
        rows = np.asarray(out[len(METRICS):], dtype=np.float64).reshape(len(self.row_labels),
                                                                         len(ROW_FIELDS))
        return metrics, rows


ALL = "*all*"
POINT = "*point*"  # the `math`-module variant of ALL (docs/performance.md 1)

# floor/ceiling as floats, as numpy returns them (math's ints would switch later sums to exact
# integer arithmetic, which differs from float64 past 2**53)
_POINT_SHIMS = {"floor": lambda x: float(math.floor(x)), "ceil": lambda x: float(math.ceil(x))}


def _all_exprs(rows: list[Row], metrics: dict[str, sp.Expr]) -> list[sp.Expr]:
    """METRICS, then every row's QUANTITIES, t_math, t_mem and time: `all_fn`'s outputs."""
    out = [metrics[m] for m in METRICS]
    for r in rows:
        out += [r.quantities[q] for q in QUANTITIES] + [r.t_math, r.t_mem, r.time]
    return out


def _point_source(exprs) -> str:
    return inspect.getsource(sp.lambdify(ARGS, exprs, modules=[_POINT_SHIMS, "math"], cse=True))


@functools.cache
def _point_namespace() -> dict[str, Any]:
    x = sp.Symbol("x")
    return dict(sp.lambdify([x], x, modules=[_POINT_SHIMS, "math"]).__globals__)


def _point_function(source: str):
    ns = dict(_point_namespace())
    exec(compile(source, "<blockroof point formula>", "exec"), ns)  # noqa: S102 - our source
    return ns["_lambdifygenerated"]


def _source(exprs) -> str:
    """The Python source `lambdify` generates for f(*ARGS) -> exprs."""
    fn = sp.lambdify(ARGS, exprs, modules="numpy", cse=True)
    return inspect.getsource(fn)


# One Formulas per structure per process, built once however many threads ask at the same time
# (a lock per key; other keys build in parallel).
_FORMULAS: dict[StructureKey, Formulas] = {}
_KEY_LOCKS: dict[StructureKey, threading.Lock] = {}
_GUARD = threading.Lock()


def formulas(key: StructureKey) -> Formulas:
    """The formulas of a structure: from memory, else from the disk cache, else built."""
    f = _FORMULAS.get(key)
    if f is not None:
        return f
    with _GUARD:
        lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with lock:
        f = _FORMULAS.get(key)
        if f is None:
            f = _FORMULAS[key] = _load_or_build(key)
    return f


def cache_generation() -> int:
    """Counts `formulas.cache_clear()` calls: caches built on Formulas objects (api's point
    cache) compare it to know theirs are stale."""
    return _GENERATION[0]


_GENERATION = [0]


def _clear_memory_cache() -> None:
    """Forget the formulas held in this process (the disk cache stays)."""
    _GENERATION[0] += 1
    with _GUARD:
        _FORMULAS.clear()
        _KEY_LOCKS.clear()


formulas.cache_clear = _clear_memory_cache  # type: ignore[attr-defined]


def _load_or_build(key: StructureKey) -> Formulas:
    key_text = repr(key)
    entry = formula_cache.load(key_text)
    if entry is not None:
        try:
            labels = [tuple(x) for x in entry["row_labels"]]
            sources = dict(entry["sources"])
            packed = entry["exprs"]
            if ALL in sources and all(m in sources for m in METRICS):
                return Formulas(key, labels, sources,
                                functools.partial(formula_cache.unpack_exprs, packed))
        except (KeyError, TypeError, ValueError):
            pass
    f = Formulas.build(key)
    rows, metrics = f._expressions()
    formula_cache.save(key_text, {"row_labels": f.row_labels, "sources": f._sources,
                                  "exprs": formula_cache.pack_exprs((rows, metrics))})
    return f
