"""What the Formulas page shows about one `costmodel.Formula` (pure: no streamlit).

- `legend_table`: each symbol of the expression, its meaning (`costmodel.symbols.LEGEND`, with
  the stack named for subscripts _b / _t) and its value at the current inputs;
- `substituted_latex`: the same expression with every symbol printed as its value (sympy's
  `latex(symbol_names=...)`: the expression itself is not changed or evaluated);
- `row_parts`: '<phase>/<op>/<quantity>' names split for the page's pickers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import sympy as sp

from costmodel.symbols import LEGEND

STACKS = {"b": "block decoder", "t": "token decoder"}
LONG_LATEX_CHARS = 3000  # longer expressions are shown folded; values substituted only below


def meaning(name: str) -> str:
    """Legend text of a symbol name, e.g. 'D_b' -> 'model width (block decoder)'."""
    if name in LEGEND:
        return LEGEND[name]
    base, _, sub = name.rpartition("_")
    if base in LEGEND and sub in STACKS:
        return f"{LEGEND[base]} ({STACKS[sub]})"
    return ""


def number_latex(x: float) -> str:
    """A value as LaTeX: integers exactly, others with 4 significant digits (a·10^k)."""
    if not math.isfinite(x):
        return "\\infty" if x > 0 else ("-\\infty" if x < 0 else "\\mathrm{NaN}")
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x)}"
    mant, _, exp = f"{x:.4g}".partition("e")
    return f"{mant} \\cdot 10^{{{int(exp)}}}" if exp else mant


def legend_table(expr: sp.Expr, values: Mapping[sp.Symbol, float]) -> pd.DataFrame:
    """Columns: symbol, meaning, value (NaN for a symbol without a value)."""
    rows = []
    for s in sorted(expr.free_symbols, key=lambda s: s.name):
        rows.append({"symbol": s.name, "meaning": meaning(s.name),
                     "value": float(values.get(s, float("nan")))})
    return pd.DataFrame(rows, columns=["symbol", "meaning", "value"])


def substituted_latex(expr: sp.Expr, values: Mapping[sp.Symbol, float]) -> str:
    """LaTeX of `expr` with each symbol replaced by its value in parentheses."""
    names = {s: f"({number_latex(float(values[s]))})" for s in expr.free_symbols if s in values}
    return sp.latex(expr, symbol_names=names)


def row_parts(names: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """phase -> op -> quantities, from '<phase>/<op>/<quantity>' names (metrics skipped)."""
    out: dict[str, dict[str, list[str]]] = {}
    for name in names:
        parts = name.split("/")
        if len(parts) == 3:
            out.setdefault(parts[0], {}).setdefault(parts[1], []).append(parts[2])
    return out
