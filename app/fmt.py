"""Human units at the edge (docs/design.md: SI inside, human units only at the edges).

The dashboard's metric cards show these strings; tests compare them with the same functions
applied to `costmodel.estimate` results.
"""

from __future__ import annotations

from costmodel.units import (  # noqa: F401 - one set of formatters for CLI and dashboard
    GiB,
    MiB,
    bytes_,
    count,
    flops,
    quantity,
    ratio,
    seconds,
    si,
    tokens_per_s,
)


def for_unit(unit: str):
    """The formatter for a value in `unit` (s, bytes, tokens/s, ...): one style per unit."""
    if unit == "s":
        return seconds
    if unit == "bytes":
        return bytes_
    if "tokens/s" in unit:
        return lambda x: si(x, "tok/s")
    return si


def money(x: float | None) -> str:
    return "—" if x is None else f"{x:,.4g}"


def model_name(name: str) -> str:
    """The paper's display name of a preset ("Block 1.4B"), else the spec's own name."""
    from costmodel.presets import UnknownPresetError, display_name

    try:
        return display_name(name)
    except UnknownPresetError:
        return name
