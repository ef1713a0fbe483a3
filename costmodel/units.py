"""Human units at the edges (docs/design.md: SI inside, human units only at the edges).

The CLI's text output and the dashboard print numbers through these functions; `--json` and
the API stay raw SI. Decimal SI prefixes for rates and counts (k, M, G, T, P), binary prefixes
for memory (MiB, GiB), as device memory is printed.
"""

from __future__ import annotations

import math

MiB = 2**20
GiB = 2**30
_SI = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(x: float, unit: str = "", digits: int = 3) -> str:
    """1.77 TFLOP, 3.46 k tok/s, 546 B: three significant digits and an SI prefix."""
    if not math.isfinite(x):
        return "∞" if x > 0 else "—"
    sep = " " if unit else ""
    for scale, prefix in _SI:
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g} {prefix}{unit}"
    if x == int(x):
        return f"{int(x)}{sep}{unit}"
    return f"{x:.{digits}g}{sep}{unit}"


def tokens_per_s(x: float) -> str:
    """12,345 tok/s."""
    return f"{x:,.0f} tok/s" if math.isfinite(x) else "—"


def seconds(x: float) -> str:
    """Three significant digits in ns, µs, ms or s."""
    if not math.isfinite(x):
        return "∞" if x > 0 else "—"
    if x == 0:
        return "0 s"
    if abs(x) < 1e-6:
        return f"{x * 1e9:.3g} ns"
    if abs(x) < 1e-3:
        return f"{x * 1e6:.3g} µs"
    if abs(x) < 1:
        return f"{x * 1e3:.3g} ms"
    return f"{x:.3g} s"


def bytes_(x: float) -> str:
    """Whole bytes below 1 KiB, KiB/MiB below 1 GiB, else GiB (binary units)."""
    if not math.isfinite(x):
        return "—"
    if abs(x) < 1024:
        return f"{x:.0f} B"
    if abs(x) < MiB:
        return f"{x / 1024:,.1f} KiB"
    return f"{x / MiB:,.1f} MiB" if abs(x) < GiB else f"{x / GiB:,.2f} GiB"


def flops(x: float) -> str:
    """1.77 TFLOP."""
    return si(x, "FLOP")


def count(x: float) -> str:
    """A whole number with thousands separators, ∞ for an infinite bound."""
    if math.isinf(x):
        return "∞"
    if math.isnan(x):
        return "—"
    return f"{x:,.0f}"


def ratio(x: float) -> str:
    """2.35×."""
    return f"{x:.3g}×" if math.isfinite(x) else "—"


def quantity(name: str, x: float) -> str:
    """A value in human units chosen from its name's unit suffix (_s, _bytes, flops, ...)."""
    last = name.rsplit("/", 1)[-1]
    if last.endswith("tokens_per_s"):
        return tokens_per_s(x)
    if last.endswith("_s") or last == "time":
        return seconds(x)
    if last.endswith("bytes") or "bytes_" in last:
        return bytes_(x)
    if "flops" in last:
        return flops(x)
    if last.endswith("context"):
        return count(x) + " tokens" if math.isfinite(x) else "never"
    if last.endswith("batch"):
        return count(x) if math.isfinite(x) else "never"
    return count(x) if math.isinf(x) or abs(x) < 1e15 else f"{x:.4g}"
