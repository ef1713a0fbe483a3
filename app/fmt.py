"""Human units at the edge (DESIGN.md: SI inside, human units only at the edges).

The dashboard's metric cards show these strings; tests compare them with the same functions
applied to `costmodel.estimate` results.
"""

from __future__ import annotations

import math

MiB = 2**20
GiB = 2**30


def tokens_per_s(x: float) -> str:
    """12,345 tok/s."""
    return f"{x:,.0f} tok/s" if math.isfinite(x) else "—"


def seconds(x: float) -> str:
    """Three significant digits in µs, ms or s."""
    if not math.isfinite(x):
        return "∞" if x > 0 else "—"
    if x < 1e-3:
        return f"{x * 1e6:.3g} µs"
    if x < 1:
        return f"{x * 1e3:.3g} ms"
    return f"{x:.3g} s"


def bytes_(x: float) -> str:
    """MiB below 1 GiB, else GiB (binary units, as device memory is printed)."""
    if not math.isfinite(x):
        return "—"
    return f"{x / MiB:,.1f} MiB" if abs(x) < GiB else f"{x / GiB:,.2f} GiB"


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


def money(x: float | None) -> str:
    return "—" if x is None else f"{x:,.4g}"


def model_name(name: str) -> str:
    """The paper's display name of a preset ("Block 1.4B"), else the spec's own name."""
    from costmodel.presets import UnknownPresetError, display_name

    try:
        return display_name(name)
    except UnknownPresetError:
        return name


def quantity(name: str, x: float) -> str:
    """A formula's value in human units chosen from its name's unit suffix (_s, _bytes, ...)."""
    last = name.rsplit("/", 1)[-1]
    if last.endswith("_s") or last == "time":
        return seconds(x)
    if last.endswith("bytes") or "bytes_" in last:
        return bytes_(x)
    if last.endswith("tokens_per_s"):
        return tokens_per_s(x)
    return count(x) if math.isinf(x) or abs(x) < 1e15 else f"{x:.4g}"
