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
                moving = staged(sp.Mul, [walk(a) for a in node.args if a.free_symbols & varying])
                out = sp.Mul(*([scalar(sp.Mul(*fixed))] if fixed else []), *moving)
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
            return sp.Add(*([scalar(sp.Add(*fixed))] if fixed else []), *staged(sp.Add, terms))

        def staged(op, items: list[sp.Expr]) -> list[sp.Expr]:
            # operands grouped by the varying symbols they depend on, smaller groups first, each
            # group computed on its own (smaller) grid before it meets the others
            groups: dict[tuple[str, ...], list[sp.Expr]] = {}
            for it in items:
                dep = tuple(sorted(x.name for x in it.free_symbols & varying))
                groups.setdefault(dep, []).append(it)
            order = sorted(groups, key=lambda d: (len(d), d))
            return [groups[d][0] if len(groups[d]) == 1 else _STAGE(op(*groups[d]))
                    for d in order]

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


def evaluate(exprs: tuple[sp.Expr, ...], args: tuple[sp.Symbol, ...],
             values: dict[sp.Symbol, Any], chunk: int = 1 << 16) -> list[np.ndarray]:
    """Each of `exprs` over `values`, in one fused pass: scalars, 1-D arrays of one length, or
    arrays that broadcast together (an open grid: batch (n, 1, 1), prompt (1, m, 1), ...).

    On an open grid numpy computes each sub-expression over the axes it depends on only (a
    term in the prompt length alone over m points, not n x m x k), and only what mixes every
    axis runs over the whole grid: per point the same operations as the flat product, so the
    same numbers. Results have the broadcast shape; chunks of ~`chunk` points along the first
    axis trade cache use against numpy's per-operation overhead (docs/performance.md 2)."""
    varying = frozenset(a for a in args if np.ndim(values[a]))
    sp_ = split(exprs, varying, args)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ks = [np.float64(k) for k in sp_.scalar_fn(*[
            np.float64(values[a]) if not np.ndim(values[a]) else np.float64(1.0)
            for a in args])]
        arrays = [np.asarray(values[a], dtype=np.float64) for a in sp_.varying_args]
        shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else (1,)
        if len(shape) == 1:
            arrays = [np.broadcast_to(a, shape) for a in arrays]
        outs = [np.empty(shape, dtype=np.float64) for _ in exprs]
        inner = int(np.prod(shape[1:], dtype=np.int64))
        step = max(1, chunk // max(inner, 1))
        for lo in range(0, shape[0], step):
            part = [a[lo:lo + step] if a.shape[0] > 1 else a for a in arrays]
            for out, got in zip(outs, sp_.array_fn(*part, *ks), strict=True):
                out[lo:lo + step] = got
    return outs
