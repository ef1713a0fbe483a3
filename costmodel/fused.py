"""Sweep evaluation with the scalar work hoisted out of the per-point arrays (issue 18,
docs/performance.md 2).

In a sweep only a few symbols vary per point (batch, prompt and generated lengths); the model,
device and profile are one number each. `split(exprs, varying)` rewrites metric expressions so
that every sub-expression free of the varying symbols becomes one fresh scalar symbol, and the
scalar factors or terms of a mixed product or sum are grouped into one: `2*N*D*B*S` becomes
`k*B*S` (two array multiplications instead of four). The scalars are evaluated once per call
(numpy float64 scalars, so inf/NaN behave as in the arrays); the arrays go through one
compiled, common-subexpression-eliminated function per metric set, in chunks along the first
axis. The grouping re-associates products and sums of the constants, so results equal the
unsplit formulas to rounding (rel 1e-12 in tests/test_engine.py), not bit for bit.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy as sp
from sympy.core.relational import Relational
from sympy.functions.elementary.piecewise import ExprCondPair
from sympy.logic.boolalg import BooleanAtom, BooleanFunction

# an identity the printer cannot flatten: `_stage(a + b) + c` sums a and b first
_STAGE = sp.Function("_stage")


def _identity(x):
    return x


# (a Symbol is a sympy Boolean too, hence the explicit list)
_CONDITIONS = (Relational, BooleanFunction, BooleanAtom, ExprCondPair)


class Split:
    """Array expressions over (varying symbols, k_0..k_m) and the k_i as scalar expressions."""

    def __init__(self, exprs: list[sp.Expr], varying: frozenset[sp.Symbol],
                 args: tuple[sp.Symbol, ...]):
        self.varying_args = tuple(a for a in args if a in varying)
        scalars: dict[sp.Expr, sp.Symbol] = {}
        memo: dict[sp.Expr, sp.Expr] = {}

        def scalar(node: sp.Expr) -> sp.Expr:
            if node.is_Number:
                return node
            k = scalars.get(node)
            if k is None:
                k = scalars[node] = sp.Symbol(f"_k{len(scalars)}")
            return k

        def walk(node: sp.Expr) -> sp.Expr:
            hit = memo.get(node)
            if hit is not None:
                return hit
            if isinstance(node, _CONDITIONS):
                # conditions stay conditions; their operands are split
                out = node if node.is_Atom else node.func(*[walk(a) for a in node.args])
            elif not (node.free_symbols & varying):
                out = scalar(node)
            elif node.is_Atom:
                out = node
            elif isinstance(node, sp.Add):
                out = add(node)
            elif isinstance(node, sp.Mul):
                fixed = [a for a in node.args if not (a.free_symbols & varying)]
                # the scalar joins the smallest operand first (a scalar times the whole grid
                # would be one more pass over it)
                out = sp.Mul(*staged(sp.Mul, ([scalar(sp.Mul(*fixed))] if fixed else [])
                                     + [walk(a) for a in node.args if a.free_symbols & varying]))
            else:
                out = node.func(*[walk(a) for a in node.args])
            memo[node] = out
            return out

        def add(node: sp.Add) -> sp.Expr:
            # terms c_i * X with the same array part X: one (sum of c_i) * X
            fixed, coeffs = [], {}
            for a in node.args:
                if not (a.free_symbols & varying):
                    fixed.append(a)
                    continue
                parts = a.args if isinstance(a, sp.Mul) else (a,)
                c = [f for f in parts if not (f.free_symbols & varying)]
                m = [walk(f) for f in parts if f.free_symbols & varying]
                key = m[0] if len(m) == 1 else sp.Mul(*m)
                coeffs.setdefault(key, []).append(sp.Mul(*c) if c else sp.Integer(1))
            terms = []
            for key, cs in coeffs.items():
                terms.append(key if cs == [1] else sp.Mul(scalar(sp.Add(*cs)), key))
            return sp.Add(*staged(sp.Add, ([scalar(sp.Add(*fixed))] if fixed else []) + terms))

        def staged(op, items: list[sp.Expr]) -> list[sp.Expr]:
            # operands grouped by the varying symbols they depend on, each group computed on
            # its own (smaller) grid; then the two groups whose union depends on the fewest
            # symbols are combined first, so that only the last combinations run over the whole
            # grid (the printer would reorder a flat sum or product: each step is staged)
            groups: dict[frozenset, list[sp.Expr]] = {}
            for it in items:
                groups.setdefault(frozenset(it.free_symbols & varying), []).append(it)
            parts = [(d, g[0] if len(g) == 1 else _STAGE(op(*g))) for d, g in groups.items()]
            parts.sort(key=lambda p: (len(p[0]), sorted(x.name for x in p[0])))
            while len(parts) > 1:
                i, j = min(((i, j) for i in range(len(parts)) for j in range(i + 1, len(parts))),
                           key=lambda ij: (len(parts[ij[0]][0] | parts[ij[1]][0]), ij))
                (di, ei), (dj, ej) = parts[i], parts[j]
                parts[i] = (di | dj, _STAGE(op(ei, ej)))
                del parts[j]
            return [p[1] for p in parts]

        with sp.evaluate(False):  # rebuild as is: no re-simplification (seconds on big sums)
            self.array_exprs = [walk(e) for e in exprs]
        self.scalar_syms = tuple(scalars.values())
        self.scalar_exprs = list(scalars)
        self.scalar_fn = (sp.lambdify(args, self.scalar_exprs, modules="numpy", cse=True)
                          if self.scalar_exprs else (lambda *_: []))
        self.array_fn = sp.lambdify(self.varying_args + self.scalar_syms, self.array_exprs,
                                    modules=[{"_stage": _identity}, "numpy"], cse=True)


@functools.lru_cache(maxsize=256)
def split(exprs: tuple[sp.Expr, ...], varying: frozenset[sp.Symbol],
          args: tuple[sp.Symbol, ...]) -> Split:
    return Split(list(exprs), varying, args)


def _scalar_condition(cond: sp.Basic, varying: frozenset[sp.Symbol]) -> sp.Basic | None:
    """`cond` without the varying symbols, or None when it needs them. A comparison with zero
    keeps its truth when a positive factor is dropped: `B*(c1 - c2) > 0` is `c1 - c2 > 0`,
    since batch and lengths are positive symbols."""
    if not (cond.free_symbols & varying):
        return cond
    if not isinstance(cond, Relational):
        return None
    scalar, moving = sp.factor_terms(cond.lhs - cond.rhs).as_independent(*varying,
                                                                        as_Add=False)
    if moving.is_positive is not True or (scalar.free_symbols & varying):
        return None
    return cond.func(scalar, 0)


class Switches:
    """The Piecewise nodes of `exprs` whose conditions hold or fail for the whole grid at once
    (the sign of a scalar: which regime of a closed-form decode sum applies, docs/model.md).
    They are decided in the scalar pass, and the array pass computes the taken branch only:
    numpy's select would compute every branch over every point."""

    def __init__(self, exprs: tuple[sp.Expr, ...], varying: frozenset[sp.Symbol],
                 args: tuple[sp.Symbol, ...]):
        self.exprs = exprs
        self.nodes: list[tuple[sp.Piecewise, int]] = []  # (node, its number of branches)
        conds: list[sp.Basic] = []
        found = set().union(*(e.atoms(sp.Piecewise) for e in exprs))
        for pw in sorted(found, key=sp.default_sort_key):
            scalar = [_scalar_condition(c, varying) for _, c in pw.args]
            if all(c is not None for c in scalar):
                self.nodes.append((pw, len(scalar)))
                conds += scalar
        self.condition_fn = sp.lambdify(args, conds, modules="numpy") if conds else None
        self._chosen: dict[tuple[int, ...], tuple[sp.Expr, ...]] = {}

    def choose(self, scalar_args: list[np.float64]) -> tuple[sp.Expr, ...]:
        """`exprs` with every switch replaced by its first branch whose condition holds (a NaN
        comparison fails, as in numpy's select; a switch without a true condition is NaN)."""
        if self.condition_fn is None:
            return self.exprs
        flags = [bool(f) for f in self.condition_fn(*scalar_args)]
        choice, at = [], 0
        for _, n in self.nodes:
            choice.append(next((i for i, f in enumerate(flags[at:at + n]) if f), -1))
            at += n
        key = tuple(choice)
        if key not in self._chosen:
            taken = {pw: (pw.args[i].expr if i >= 0 else sp.nan)
                     for (pw, _), i in zip(self.nodes, key, strict=True)}
            exprs = self.exprs
            while True:  # a switch inside a taken branch is replaced on the next pass
                nxt = tuple(e.xreplace(taken) for e in exprs)
                if nxt == exprs:
                    break
                exprs = nxt
            self._chosen[key] = exprs
        return self._chosen[key]


@functools.lru_cache(maxsize=256)
def switches(exprs: tuple[sp.Expr, ...], varying: frozenset[sp.Symbol],
             args: tuple[sp.Symbol, ...]) -> Switches:
    return Switches(exprs, varying, args)


@functools.lru_cache(maxsize=256)
def _free_symbols(exprs: tuple[sp.Expr, ...]) -> frozenset[sp.Symbol]:
    return frozenset().union(*(e.free_symbols for e in exprs))


def evaluate(exprs: tuple[sp.Expr, ...], args: tuple[sp.Symbol, ...],
             values: dict[sp.Symbol, Any], chunk: int = 1 << 16,
             out: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
    """Each of `exprs` over `values`, in one fused pass: scalars, 1-D arrays of one length, or
    arrays that broadcast together (an open grid: batch (n, 1, 1), prompt (1, m, 1), ...).

    On an open grid numpy computes each sub-expression over the axes it depends on only (a
    term in the prompt length alone over m points, not n x m x k), and only what mixes every
    axis runs over the whole grid: per point the same operations as the flat product, so the
    same numbers. Results have the broadcast shape of the arrays `exprs` use (a metric free
    of the batch is not spread over the batch axis); chunks of ~`chunk` points along the first
    axis trade cache use against numpy's per-operation overhead (docs/performance.md 2).
    `out`: per expression, an array of that shape to write the result into (the caller's
    column: no second copy), or None."""
    used = _free_symbols(exprs)
    varying = frozenset(a for a in args if a in used and np.ndim(values[a]))
    # (the varying symbols stand in as 1.0: no scalar depends on them)
    scalar_args = [np.float64(values[a]) if not np.ndim(values[a]) else np.float64(1.0)
                   for a in args]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if varying:
            exprs = switches(exprs, varying, args).choose(scalar_args)
        sp_ = split(exprs, varying, args)
        ks = [np.float64(k) for k in sp_.scalar_fn(*scalar_args)]
        arrays = [np.asarray(values[a], dtype=np.float64) for a in sp_.varying_args]
        shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else (1,)
        if len(shape) == 1:
            arrays = [np.broadcast_to(a, shape) for a in arrays]
        outs = [o if o is not None and o.shape == shape else np.empty(shape, dtype=np.float64)
                for o in (out or [None] * len(exprs))]
        inner = int(np.prod(shape[1:], dtype=np.int64))
        step = max(1, chunk // max(inner, 1))
        for lo in range(0, shape[0], step):
            part = [a[lo:lo + step] if a.shape[0] > 1 else a for a in arrays]
            for o, got in zip(outs, sp_.array_fn(*part, *ks), strict=True):
                o[lo:lo + step] = got
    return outs
