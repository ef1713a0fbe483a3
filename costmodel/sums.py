"""Closed-form sums over decode steps (docs/design.md idea 3: no Python loops over steps).

Every per-step quantity of the cost model is linear in its step index (cached context grows by
one entry per step), so sums of FLOPs and bytes are arithmetic series, and the roofline time of
an op, max(FLOPs/pi, bytes/beta), is the maximum of two linear functions, whose sum over an
integer range has an exact closed form with one crossover point.
"""

from __future__ import annotations

import sympy as sp


def _linear_parts(expr: sp.Expr, i: sp.Symbol) -> tuple[sp.Expr, sp.Expr]:
    """(slope, intercept) of an expression linear in i; raises if it is not linear."""
    expr = sp.expand(expr)
    slope = sp.diff(expr, i)
    if sp.diff(slope, i) != 0:
        raise ValueError(f"expression is not linear in {i}: {expr}")
    return slope, sp.expand(expr.subs(i, 0))


def sum_linear(expr: sp.Expr, i: sp.Symbol, lo: sp.Expr, hi: sp.Expr) -> sp.Expr:
    """sum_{i=lo}^{hi} expr for expr linear in i (zero when hi < lo)."""
    slope, icpt = _linear_parts(expr, i)
    n = hi - lo + 1
    if slope == 0:
        return n * icpt
    return n * icpt + slope * (lo + hi) * n / 2


def sum_max_linear(e1: sp.Expr, e2: sp.Expr, i: sp.Symbol, lo: sp.Expr, hi: sp.Expr) -> sp.Expr:
    """Exact sum_{i=lo}^{hi} max(e1, e2) for e1, e2 linear in i (requires hi >= lo - 1).

    max(e1, e2) = e2 + max(h, 0) with h = e1 - e2 = alpha*i + gamma. h > 0 on one side of
    x = -gamma/alpha: i >= floor(x) + 1 when alpha > 0, i <= ceil(x) - 1 when alpha < 0.
    """
    a1, b1 = _linear_parts(e1, i)
    a2, b2 = _linear_parts(e2, i)
    n = hi - lo + 1
    alpha, gamma = a1 - a2, b1 - b2
    if alpha == 0:
        return n * sp.Max(b1, b2) + (a1 * (lo + hi) * n / 2 if a1 != 0 else 0)
    base = sum_linear(e2, i, lo, hi)
    # crossover, clamped to the range so that a near-zero alpha cannot overflow to inf
    x = sp.Min(sp.Max(-gamma / alpha, lo - 1), hi + 1)
    first = sp.Max(lo, sp.floor(x) + 1)
    cnt_up = sp.Max(0, hi - first + 1)
    last = sp.Min(hi, sp.ceiling(x) - 1)
    cnt_down = sp.Max(0, last - lo + 1)
    extra = sp.Piecewise(
        (cnt_up * gamma + alpha * (first + hi) * cnt_up / 2, alpha > 0),
        (cnt_down * gamma + alpha * (lo + last) * cnt_down / 2, alpha < 0),
        (n * sp.Max(gamma, 0), True),
    )
    return base + extra
