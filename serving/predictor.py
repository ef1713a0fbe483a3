"""Execution-time predictor: the time of one forward of a mixed batch, from the cost model.

A continuous-batching iteration runs a few forwards (docs/serving.md 3): vanilla one forward
over every scheduled sequence; Block Transformer a block-decoder forward (sequences at a
block boundary and prefill chunks, in block positions), a token-decoder prefix forward (the
sequences whose next token starts a block) and a token-decoder one-token forward (the rest).

Each forward kind is the cost model's own op inventory (`costmodel.ops.stack_ops`,
`embedder_op`, `expansion_op`, the same functions the request formulas sum) with the batch B,
new positions per sequence q and cached entries c left symbolic, compiled once per regime.

Two regimes (docs/serving.md 3). The op formulas hold per-forward indicators of q: a
one-position step (q = 1) builds no causal mask, lays no output out and may run a
flash-decoding kernel; a forward of several positions (q > 1) does (`several = Min(q - 1, 1)`
in `costmodel.ops`, kernel counts such as 4 + 4 [q > 1]). So the coefficients are read per
regime, never at q = 0 (where the indicator is -1):

- ``one`` (every sequence has q = 1: decode steps): the inventory with q = 1 literally;
  value = w + sum over sequences of (d c + e), w at B = 0, e and d at B = 1, c = 0 and 1 (the
  per-token and per-position terms a q, b q c, g q^2 are not separable from e and d there);
- ``multi`` (some sequence has q > 1: prefills, prefill chunks, prefix forwards of P > 1
  positions): every op's FLOPs, bytes and kernel launches have the form

    value = w + m q_max n_max + sum over sequences of (a q + b q c + g q^2 + d c + e)

  (weights and per-forward kernels: w, read at q = 2 with B = 0; the causal mask that eager
  attention builds once per forward over the padded [q, n_k] rectangle: m, with q_max the
  longest q and n_max the longest c + q; per-token linear work: a; attention over the cached
  and new keys: b, g; KV read at each sequence's own context: d; per-sequence rows such as the
  LM head on the last position: e), read at q in {2, 3, 4}, c in {0, 1}.

A forward is in the ``multi`` regime when any of its sequences has q > 1, and then all its
sequences are charged with the multi-position coefficients. That is an approximation for mixed
batches: the cost model describes a forward whose sequences share q, so a decode sequence
riding in a prefill forward is charged as a one-position member of a multi-position forward
(e.g. its share of the output layout copy), and the mask covers the padded rectangle. For a
forward whose sequences share q (a static batch) both regimes are exact.

`check_linear_form` checks each regime's form at other points of that regime, so a forward of
any mix of sequences costs one small matrix product over the aggregates
[1, sum q, sum q c, sum q^2, sum c, n, q_max n_max, q_max] (the last selects the regime and
has no coefficient) - no Python per op or per sequence. Per op the roofline time is then, as
in `costmodel.roofline`,

    eta_ov max(T_math, T_mem) + (1 - eta_ov)(T_math + T_mem) + kernels t_kernel,

plus t_forward per forward call; for a static batch this equals the cost model's phase rows
exactly (tests/test_serving.py checks it against `costmodel.estimate`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from costmodel import symbols as sy
from costmodel.api import (
    hardware_values,
    impl_values,
    model_values,
    resolve_model,
    structure_key,
)
from costmodel.errors import UserError
from costmodel.hardware import Hardware, get_hardware
from costmodel.implementation import Implementation, get_implementation
from costmodel.metrics import ARGS, StructureKey
from costmodel.ops import OpCost, embedder_op, expansion_op, stack_ops
from costmodel.spec import BlockSpec, VanillaSpec

# symbols of one forward besides ARGS: new positions and cached entries per sequence
Q = sp.Symbol("q_fw", positive=True, integer=True)
C = sp.Symbol("c_fw", nonnegative=True, integer=True)
# aggregates [1, sum q, sum q c, sum q^2, sum c, n, q_max n_max, q_max] of one forward
N_AGG = 8
RECT, Q_MAX = 6, 7  # columns: the padded mask rectangle, the longest q (selects the regime)
REGIMES = ("one", "multi")  # every sequence q = 1; some sequence q > 1 (module docstring)


def aggregates(q: np.ndarray, c: np.ndarray) -> np.ndarray:
    """[1, sum q, sum q c, sum q^2, sum c, n, q_max n_max, q_max] of one forward's sequences
    (n_max = the longest c + q; the rectangle is 0 in a one-position forward, which builds
    no mask)."""
    q = np.asarray(q, dtype=np.float64)
    if q.size == 0:
        return np.zeros(N_AGG)
    c = np.asarray(c, dtype=np.float64)
    q_max = float(q.max())
    rect = q_max * float((c + q).max()) if q_max > 1 else 0.0
    return np.array([1.0, q.sum(), q @ c, q @ q, c.sum(), float(q.size), rect, q_max])


def equal_aggregates(b: float, q: float, c: float) -> np.ndarray:
    """`aggregates` of b sequences that share q and c."""
    return aggregates(np.full(int(b), q), np.full(int(b), c))


def regime_of(q_max: float) -> str:
    return "multi" if q_max > 1 else "one"


def forward_ops(key: StructureKey, kind: str, q: sp.Expr = Q) -> list[OpCost]:
    """The op inventory of one forward kind, batch B, q new positions after c cached (q = 1
    literally for the one-position regime, so a flash-decoding profile gets its decode kernel)."""
    im, one = key.impl, sp.Integer(1)
    head = one if im.logits == "last" else q
    if key.kind == "vanilla":
        if kind != "step":
            raise ValueError(f"kind: a vanilla model has one forward kind 'step', got {kind!r}")
        return stack_ops("", key.stacks[0], im, sy.VANILLA, sy.B, q, C, embed=True,
                         head_rows=head)
    sb, stt = key.stacks
    if kind == "block":  # embedder on q blocks, block decoder over q block positions
        return [embedder_op(sy.B, q, sy.BLOCK_DEC.D)] + stack_ops(
            "block_decoder.", sb, im, sy.BLOCK_DEC, sy.B, q, C, embed=False, head_rows=None)
    if kind == "prefix":  # expansion, token decoder over q >= P positions from c = 0
        return [expansion_op(sy.B, sy.BLOCK_DEC.D, sy.P, sy.TOKEN_DEC.D)] + stack_ops(
            "token_decoder.", stt, im, sy.TOKEN_DEC, sy.B, q, C, embed=False, head_rows=one)
    if kind == "token":  # one-token (or q-token) local steps
        return stack_ops("token_decoder.", stt, im, sy.TOKEN_DEC, sy.B, q, C, embed=True,
                         head_rows=one)
    raise ValueError(f"kind: expected 'block', 'prefix' or 'token', got {kind!r}")


def forward_kinds(kind: str) -> tuple[str, ...]:
    return ("step",) if kind == "vanilla" else ("block", "prefix", "token")


@functools.lru_cache(maxsize=128)
def _compiled_ops(key: StructureKey, kind: str, regime: str):
    """f(*ARGS, q, c) -> [n_ops, 3] (time FLOPs, bytes, kernels) of one regime, compiled once
    (q is ignored in the one-position regime)."""
    if regime not in REGIMES:
        raise ValueError(f"regime: expected one of {REGIMES}, got {regime!r}")
    ops = forward_ops(key, kind, sp.Integer(1) if regime == "one" else Q)
    exprs = [[op.time_flops, op.bytes, op.kernels] for op in ops]
    fn = sp.lambdify((*ARGS, Q, C), exprs, modules="numpy", cse=True)
    return fn, len(ops)


def _evaluate(key: StructureKey, kind: str, regime: str, vals: dict, b: float, q: float,
              c: float) -> np.ndarray:
    if regime_of(q) != regime:
        raise ValueError(f"q: {q:g} new positions lie outside the {regime!r} regime "
                         "(one: q = 1; multi: q >= 2)")
    fn, n_ops = _compiled_ops(key, kind, regime)
    args = [np.float64(vals[a]) for a in ARGS]
    args[ARGS.index(sy.B)] = np.float64(b)
    out = np.asarray(fn(*args, np.float64(q), np.float64(c)), dtype=np.float64)
    return np.broadcast_to(out, (n_ops, 3)).copy()


def coefficients(key: StructureKey, kind: str, vals: dict, regime: str) -> np.ndarray:
    """[n_ops, 3, N_AGG]: per op and quantity, coefficients of the aggregates in one regime
    (module docstring; the q_max column is 0: it only selects the regime).

    one: w = f(0, 1, 0); per sequence p(c) = f(1, 1, c) - w, e = p(0), d = p(1) - e.
    multi: w + m q n_k at B = 0 from f(0, 2, 0) and f(0, 2, 1); then per sequence
    p(q, c) = f(1, q, c) - w - m q (q + c) = a q + b q c + g q^2 + d c + e, from
    q = 2, 3, 4 at c = 0 (second difference: g) and q = 2, 3 at c = 1 (b, d).
    """
    out = np.zeros((_compiled_ops(key, kind, regime)[1], 3, N_AGG))
    if regime == "one":
        w = _evaluate(key, kind, regime, vals, 0.0, 1.0, 0.0)
        e = _evaluate(key, kind, regime, vals, 1.0, 1.0, 0.0) - w
        d = _evaluate(key, kind, regime, vals, 1.0, 1.0, 1.0) - w - e
        out[..., 0], out[..., 4], out[..., 5] = w, d, e
        return out
    w0 = _evaluate(key, kind, regime, vals, 0.0, 2.0, 0.0)
    m = (_evaluate(key, kind, regime, vals, 0.0, 2.0, 1.0) - w0) / 2  # rectangle 2 (2 + c)
    w = w0 - 4 * m

    def p(q: float, c: float) -> np.ndarray:
        return _evaluate(key, kind, regime, vals, 1.0, q, c) - w - m * q * (q + c)

    p2, p3, p4 = p(2.0, 0.0), p(3.0, 0.0), p(4.0, 0.0)
    g = (p4 - 2 * p3 + p2) / 2
    a = p3 - p2 - 5 * g
    e = p2 - 2 * a - 4 * g
    dc2, dc3 = p(2.0, 1.0) - p2, p(3.0, 1.0) - p3  # b q + d
    b = dc3 - dc2
    d = dc2 - 2 * b
    out[..., 0], out[..., 1], out[..., 2], out[..., 3] = w, a, b, g
    out[..., 4], out[..., 5], out[..., RECT] = d, e, m
    return out


def check_linear_form(key: StructureKey, kind: str, vals: dict, coef: np.ndarray,
                      points: list[tuple[float, float, float]], regime: str) -> float:
    """Largest relative deviation of one regime's aggregate form from the compiled formulas at
    (B, q, c) points of that regime (equal sequences; B >= 1): 0 up to rounding when the form
    holds. A point outside the regime is refused (ValueError)."""
    worst = 0.0
    for b, q, c in points:
        direct = _evaluate(key, kind, regime, vals, b, q, c)
        approx = coef @ equal_aggregates(b, q, c)
        scale = np.maximum(np.abs(direct), 1e-30)
        worst = max(worst, float(np.max(np.abs(approx - direct) / scale)))
    return worst


@dataclass
class ForwardModel:
    """Time of one forward kind as a linear-max function of its aggregates, per regime.

    `coef[regime]` [N_AGG, 2 n_ops + 1]: aggregates -> T_math of each op, T_mem of each op,
    and the terms that add up linearly (kernel launches x t_kernel, t_forward). The constant
    aggregate is 1 when the forward runs and 0 when it has no sequence, so an absent forward
    costs 0; q_max > 1 selects the multi-position regime (module docstring).
    """

    kind: str
    coef: dict[str, np.ndarray]
    n_ops: int
    eta: float

    def time_s(self, agg: np.ndarray) -> np.ndarray:
        """agg: [..., N_AGG] -> forward time(s)."""
        agg = np.array(agg, dtype=np.float64)
        agg[..., 0] = agg[..., 5] > 0
        t = {r: _roofline_sum(agg @ self.coef[r], self.n_ops, self.eta) for r in REGIMES}
        return np.where(agg[..., Q_MAX] > 1, t["multi"], t["one"])


def _roofline_sum(tt: np.ndarray, n_ops: int, eta: float) -> np.ndarray:
    """Sum over ops of eta max(T_math, T_mem) + (1 - eta)(T_math + T_mem), plus the linear
    column (costmodel.roofline's per-op time, docs/serving.md 3)."""
    t_math, t_mem = tt[..., :n_ops], tt[..., n_ops:2 * n_ops]
    both = (t_math + t_mem).sum(-1)
    if eta == 0:
        return both + tt[..., -1]
    return eta * np.maximum(t_math, t_mem).sum(-1) + (1 - eta) * both + tt[..., -1]


@dataclass
class Predictor:
    """Per-forward time models of one model, hardware and implementation; plus what KV memory
    costs and holds (bytes per cached entry of each stack, weights)."""

    model: str
    kind: str
    hardware: str
    forwards: dict[str, ForwardModel]
    kv_bytes_per_entry: float  # the growing cache: tokens (vanilla) or blocks (block decoder)
    fixed_kv_bytes_per_seq: float  # block: the token decoder's local cache (P + L_B - 1 entries)
    weights_bytes: float
    capacity_bytes: float
    block_length: int  # 1 for vanilla
    prefix_length: int  # 0 for vanilla
    max_linear_error: float  # check_linear_form at build time, both regimes
    _stack_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def time_s(self, kind: str, q: np.ndarray, c: np.ndarray) -> float:
        """Time of one forward over sequences with q new positions after c cached."""
        return float(self.forwards[kind].time_s(aggregates(q, c)))

    def _stacked(self, multi: tuple[bool, ...]) -> tuple[np.ndarray, int]:
        """Block-diagonal coefficients of every forward kind, each in the regime `multi` says
        (one flag per kind): one product per iteration. Cached per pattern.

        An op with no FLOPs (norms, copies, caches) or no bytes costs T_mem or T_math alone
        (the max of a non-negative time and 0 is that time), so it is folded into the linear
        column; only ops with both keep a max (exact, and fewer columns per iteration)."""
        if multi not in self._stack_cache:
            parts = []
            for f, mu in zip(self.forwards.values(), multi, strict=True):
                coef = f.coef["multi" if mu else "one"]
                t_math, t_mem = coef[:, :f.n_ops], coef[:, f.n_ops:2 * f.n_ops]
                both = t_math.any(0) & t_mem.any(0)
                lin = coef[:, -1] + (t_math + t_mem)[:, ~both].sum(1)
                parts.append((t_math[:, both], t_mem[:, both], lin))
            n_ops = sum(m.shape[1] for m, _, _ in parts)
            out = np.zeros((N_AGG * len(parts), 2 * n_ops + 1))
            col = 0
            for i, (t_math, t_mem, lin) in enumerate(parts):
                rows, k = slice(N_AGG * i, N_AGG * (i + 1)), t_math.shape[1]
                out[rows, col:col + k] = t_math
                out[rows, n_ops + col:n_ops + col + k] = t_mem
                out[rows, -1] = lin
                col += k
            self._stack_cache[multi] = (out, n_ops)
        return self._stack_cache[multi]

    def iteration_time_s(self, agg: np.ndarray,
                         multi: tuple[bool, ...] | None = None) -> np.ndarray:
        """Iterations' times from their aggregates [k, kinds, N_AGG] (kinds in
        `forward_kinds` order; the constant aggregate must be 1 where that forward runs, else
        0). `multi`: the regime of each kind (True: multi-position) when the caller knows it
        for every row (a decode stretch); None derives it per row from q_max > 1, and rows
        sharing a pattern take one matrix product."""
        k = agg.shape[0]
        eta = next(iter(self.forwards.values())).eta
        flat = agg.reshape(k, -1)
        if multi is None:
            rows_multi = agg[:, :, Q_MAX] > 1  # [k, kinds]
            if k == 1 or (rows_multi == rows_multi[0]).all():
                multi = tuple(rows_multi[0].tolist())
            else:
                code = rows_multi @ (1 << np.arange(rows_multi.shape[1]))
                out = np.empty(k)
                for cd in np.unique(code):
                    rows = code == cd
                    out[rows] = self.iteration_time_s(agg[rows],
                                                      tuple(rows_multi[rows][0].tolist()))
                return out
        coef, n_ops = self._stacked(multi)
        return _roofline_sum(flat @ coef, n_ops, eta)


def _kv_entry_bytes(spec: VanillaSpec | BlockSpec, impl: Implementation) -> tuple[float, float]:
    """(bytes per entry of the growing cache, fixed local-cache bytes per sequence): one
    formula, `costmodel.memory.kv_bytes_per_entry` (docs/model.md 2.3)."""
    from costmodel.memory import kv_bytes_per_entry
    from costmodel.ops import ImplStructure

    vals = model_values(spec) | impl_values(impl)
    im = ImplStructure.of(impl)  # the profile's cache format (fp32 keys: docs/published.md 1)
    if isinstance(spec, VanillaSpec):
        return float(kv_bytes_per_entry(sy.VANILLA, im).subs(vals)), 0.0
    per_block = float(kv_bytes_per_entry(sy.BLOCK_DEC, im).subs(vals))
    per_local = float(kv_bytes_per_entry(sy.TOKEN_DEC, im).subs(vals))
    return per_block, per_local * spec.local_cache_entries


@functools.lru_cache(maxsize=64)
def _weights_expr(key: StructureKey) -> sp.Expr:
    """Weight bytes: `costmodel.memory`'s formula (the one `estimate` reports)."""
    from costmodel.memory import block_memory, vanilla_memory

    if key.kind == "vanilla":
        return vanilla_memory(key.stacks[0], key.impl, key.tied)["weights_bytes"]
    return block_memory(*key.stacks, key.impl, key.unused_embedding)["weights_bytes"]


# (B, q, c) points where `build_predictor` checks each regime's form: none of them a point the
# coefficients are read from
CHECK_POINTS = {
    "one": [(3.0, 1.0, 11.0), (2.0, 1.0, 300.0), (7.0, 1.0, 0.0)],
    "multi": [(3.0, 7.0, 11.0), (2.0, 5.0, 300.0), (5.0, 2.0, 0.0), (1.0, 2048.0, 0.0)],
}


@functools.lru_cache(maxsize=64)
def build_predictor(model: VanillaSpec | BlockSpec | str, hardware: Hardware | str,
                    implementation: Implementation | str = "static") -> Predictor:
    spec = resolve_model(model)
    if isinstance(spec, VanillaSpec) and spec.stack.sliding_window is not None:
        # refused rather than simulated with a full, ever-growing cache (docs/sliding-window.md)
        raise UserError(f"model: {spec.name} uses sliding-window attention, which the serving "
                        "simulator does not model (estimate, sweep and plan_capacity do)")
    hw = get_hardware(hardware)
    impl = get_implementation(implementation)
    key = structure_key(spec, impl)
    vals = model_values(spec) | impl_values(impl) | hardware_values(hw, impl)
    vals |= {sy.B: 1.0, sy.S: 1.0, sy.G: 1.0, sy.M_res: 0.0}
    fws: dict[str, ForwardModel] = {}
    worst = 0.0
    for kind in forward_kinds(spec.kind):
        per_regime: dict[str, np.ndarray] = {}
        for regime, points in CHECK_POINTS.items():
            coef = coefficients(key, kind, vals, regime)  # [n_ops, 3, N_AGG]
            worst = max(worst, check_linear_form(key, kind, vals, coef, points, regime))
            lin = coef[:, 2, :].sum(0) * float(vals[sy.t_kernel])
            lin[0] += float(vals[sy.t_forward])
            per_regime[regime] = np.concatenate(
                [coef[:, 0, :] / vals[sy.pi], coef[:, 1, :] / vals[sy.beta],
                 lin[None, :]]).T  # [N_AGG, 2 n_ops + 1]
        fws[kind] = ForwardModel(kind, per_regime, coef.shape[0], float(vals[sy.eta_ov]))
    if worst > 1e-6:
        raise RuntimeError(f"serving predictor: the cost model's op formulas left the linear "
                           f"form (deviation {worst:.3g}); docs/serving.md 3")
    per_entry, fixed = _kv_entry_bytes(spec, impl)
    weights = float(_weights_expr(key).subs(vals))
    return Predictor(
        model=spec.name, kind=spec.kind, hardware=hw.id, forwards=fws,
        kv_bytes_per_entry=per_entry, fixed_kv_bytes_per_seq=fixed, weights_bytes=weights,
        capacity_bytes=hw.capacity_bytes(),
        block_length=getattr(spec, "block_length", 1), prefix_length=getattr(spec, "prefix_length", 0),
        max_linear_error=worst,
    )
