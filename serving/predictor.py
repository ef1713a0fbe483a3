"""Execution-time predictor: the time of one forward of a mixed batch, from the cost model.

A continuous-batching iteration runs a few forwards (docs/serving.md 3): vanilla one forward
over every scheduled sequence; Block Transformer a block-decoder forward (sequences at a
block boundary and prefill chunks, in block positions), a token-decoder prefix forward (the
sequences whose next token starts a block) and a token-decoder one-token forward (the rest).

Each forward kind is the cost model's own op inventory (`costmodel.ops.stack_ops`,
`embedder_op`, `expansion_op`, the same functions the request formulas sum) with the batch B,
new positions per sequence q and cached entries c left symbolic, compiled once. In that
inventory every op's FLOPs, bytes and kernel launches have the form

    value = w + sum over sequences of (a q + b q c + g q^2 + d c + e)

(weights read once per forward: w; per-token linear work: a; attention over the cached and new
keys: b, g; KV read at each sequence's own context: d; per-sequence rows such as the LM head on
the last position: e). We read the six coefficients off the compiled formulas at a few points
and check the form at another (`check_linear_form`), so a forward of any mix of sequences costs
one small matrix product over the aggregates [1, sum q, sum q c, sum q^2, sum c, n] - no Python
per op or per sequence. Per op the roofline time is then, as in `costmodel.roofline`,

    eta_ov max(T_math, T_mem) + (1 - eta_ov)(T_math + T_mem) + kernels t_kernel,

plus t_forward per forward call; for a static batch this equals the cost model's phase rows
exactly (tests/test_serving.py checks it against `costmodel.estimate`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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
N_AGG = 6  # aggregates [1, sum q, sum q c, sum q^2, sum c, n]


def aggregates(q: np.ndarray, c: np.ndarray) -> np.ndarray:
    """[1, sum q, sum q c, sum q^2, sum c, n] of one forward's sequences."""
    q = np.asarray(q, dtype=np.float64)
    if q.size == 0:
        return np.zeros(N_AGG)
    c = np.asarray(c, dtype=np.float64)
    s = np.stack([q, q * c, q * q, c]).sum(axis=1)
    return np.array([1.0, s[0], s[1], s[2], s[3], float(q.size)])


def forward_ops(key: StructureKey, kind: str) -> list[OpCost]:
    """The op inventory of one forward kind, batch B, q new positions after c cached."""
    im, one = key.impl, sp.Integer(1)
    head = one if im.logits == "last" else Q
    if key.kind == "vanilla":
        if kind != "step":
            raise ValueError(f"kind: a vanilla model has one forward kind 'step', got {kind!r}")
        return stack_ops("", key.stacks[0], im, sy.VANILLA, sy.B, Q, C, embed=True,
                         head_rows=head)
    sb, stt = key.stacks
    if kind == "block":  # embedder on q blocks, block decoder over q block positions
        return [embedder_op(sy.B, Q, sy.BLOCK_DEC.D)] + stack_ops(
            "block_decoder.", sb, im, sy.BLOCK_DEC, sy.B, Q, C, embed=False, head_rows=None)
    if kind == "prefix":  # expansion, token decoder over q >= P positions from c = 0
        return [expansion_op(sy.B, sy.BLOCK_DEC.D, sy.P, sy.TOKEN_DEC.D)] + stack_ops(
            "token_decoder.", stt, im, sy.TOKEN_DEC, sy.B, Q, C, embed=False, head_rows=one)
    if kind == "token":  # one-token (or q-token) local steps
        return stack_ops("token_decoder.", stt, im, sy.TOKEN_DEC, sy.B, Q, C, embed=True,
                         head_rows=one)
    raise ValueError(f"kind: expected 'block', 'prefix' or 'token', got {kind!r}")


def forward_kinds(kind: str) -> tuple[str, ...]:
    return ("step",) if kind == "vanilla" else ("block", "prefix", "token")


@functools.lru_cache(maxsize=64)
def _compiled_ops(key: StructureKey, kind: str):
    """f(*ARGS, B, q, c) -> [n_ops, 3] (time FLOPs, bytes, kernels), compiled once."""
    ops = forward_ops(key, kind)
    exprs = [[op.time_flops, op.bytes, op.kernels] for op in ops]
    fn = sp.lambdify((*ARGS, Q, C), exprs, modules="numpy", cse=True)
    return fn, len(ops)


def _evaluate(key: StructureKey, kind: str, vals: dict, b: float, q: float, c: float) -> np.ndarray:
    fn, n_ops = _compiled_ops(key, kind)
    args = [np.float64(vals[a]) for a in ARGS]
    args[ARGS.index(sy.B)] = np.float64(b)
    out = np.asarray(fn(*args, np.float64(q), np.float64(c)), dtype=np.float64)
    return np.broadcast_to(out, (n_ops, 3)).copy()


def coefficients(key: StructureKey, kind: str, vals: dict) -> np.ndarray:
    """[n_ops, 3, 6]: per op and quantity, coefficients of the aggregates (module docstring).

    Read off the compiled formulas: w at B = 0; then per sequence p(q, c) = f(1, q, c) - w,
    e = p(0, 0), d = p(0, 1) - e, a + g = p(1, 0) - e, 2a + 4g = p(2, 0) - e,
    b = p(1, 1) - e - a - g - d.
    """
    w = _evaluate(key, kind, vals, 0.0, 1.0, 1.0)

    def p(q: float, c: float) -> np.ndarray:
        return _evaluate(key, kind, vals, 1.0, q, c) - w

    e = p(0.0, 0.0)
    d = p(0.0, 1.0) - e
    s1 = p(1.0, 0.0) - e
    s2 = p(2.0, 0.0) - e
    g = (s2 - 2 * s1) / 2
    a = s1 - g
    b = p(1.0, 1.0) - e - a - g - d
    return np.stack([w, a, b, g, d, e], axis=-1)


def check_linear_form(key: StructureKey, kind: str, vals: dict, coef: np.ndarray,
                      points: list[tuple[float, float, float]]) -> float:
    """Largest relative deviation of the aggregate form from the compiled formulas at
    (B, q, c) points (equal sequences): 0 up to rounding when the form holds."""
    worst = 0.0
    for b, q, c in points:
        direct = _evaluate(key, kind, vals, b, q, c)
        agg = np.array([1.0, b * q, b * q * c, b * q * q, b * c, b])
        approx = coef @ agg
        scale = np.maximum(np.abs(direct), 1e-30)
        worst = max(worst, float(np.max(np.abs(approx - direct) / scale)))
    return worst


@dataclass
class ForwardModel:
    """Time of one forward kind as a linear-max function of its aggregates.

    `coef` [6, 2 n_ops + 1]: aggregates -> T_math of each op, T_mem of each op, and the terms
    that add up linearly (kernel launches x t_kernel, t_forward). The constant aggregate is 1
    when the forward runs and 0 when it has no sequence, so an absent forward costs 0.
    """

    kind: str
    coef: np.ndarray
    n_ops: int
    eta: float

    def time_s(self, agg: np.ndarray) -> np.ndarray:
        """agg: [..., 6] -> forward time(s)."""
        agg = np.array(agg, dtype=np.float64)
        agg[..., 0] = agg[..., 5] > 0
        return _roofline_sum(agg @ self.coef, self.n_ops, self.eta)


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
    max_linear_error: float  # check_linear_form at build time

    def time_s(self, kind: str, q: np.ndarray, c: np.ndarray) -> float:
        """Time of one forward over sequences with q new positions after c cached."""
        return float(self.forwards[kind].time_s(aggregates(q, c)))

    @functools.cached_property
    def _stacked(self) -> tuple[np.ndarray, int]:
        """Block-diagonal coefficients of every forward kind: one product per iteration."""
        kinds = list(self.forwards.values())
        n_ops = sum(f.n_ops for f in kinds)
        out = np.zeros((N_AGG * len(kinds), 2 * n_ops + 1))
        col = 0
        for i, f in enumerate(kinds):
            rows = slice(N_AGG * i, N_AGG * (i + 1))
            out[rows, col:col + f.n_ops] = f.coef[:, :f.n_ops]
            out[rows, n_ops + col:n_ops + col + f.n_ops] = f.coef[:, f.n_ops:2 * f.n_ops]
            out[rows, -1] = f.coef[:, -1]
            col += f.n_ops
        return out, n_ops

    def iteration_time_s(self, agg: np.ndarray) -> np.ndarray:
        """Iterations' times from their aggregates [k, kinds, 6] (kinds in `forward_kinds`
        order; the constant aggregate must be 1 where that forward runs, else 0)."""
        coef, n_ops = self._stacked
        k = agg.shape[0]
        eta = next(iter(self.forwards.values())).eta
        return _roofline_sum(agg.reshape(k, -1) @ coef, n_ops, eta)


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
        coef = coefficients(key, kind, vals)  # [n_ops, 3, 6]
        worst = max(worst, check_linear_form(key, kind, vals, coef,
                                             [(3.0, 7.0, 11.0), (2.0, 1.0, 300.0)]))
        n_ops = coef.shape[0]
        lin = coef[:, 2, :].sum(0) * float(vals[sy.t_kernel])
        lin[0] += float(vals[sy.t_forward])
        m = np.concatenate([coef[:, 0, :] / vals[sy.pi], coef[:, 1, :] / vals[sy.beta],
                            lin[None, :]]).T  # [6, 2 n_ops + 1]
        fws[kind] = ForwardModel(kind, m, n_ops, float(vals[sy.eta_ov]))
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
