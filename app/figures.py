"""Plotly figure builders (pure functions of DataFrames and numbers; no streamlit).

Each builder assembles the figure as plain trace and layout dicts and validates them once with
`go.Figure(...)`: half the cost of incremental `add_*`/`update_*` calls, which keeps a
dashboard interaction inside its 300 ms budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from costmodel.api import Estimate
from costmodel.units import si

BOUND_COLORS = {"compute": "#d62728", "memory": "#1f77b4", "overhead": "#7f7f7f",
                "none": "#c7c7c7"}
SIDE_SYMBOLS = {"Vanilla": "circle", "Block": "diamond"}
KIND_COLORS = {"vanilla": "#1f77b4", "block": "#ff7f0e"}
PALETTE = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def _axis(title: str, log: bool = False, tickformat: str | None = ".3~s",
          **extra: Any) -> dict[str, Any]:
    """An axis with one number style: SI prefixes (".3~s": 546, 1.09k, 100T) and, on log axes,
    labels at powers of ten only (minor 2..9 labels clutter). `tickformat=None` keeps plain
    numbers (a ms axis: 3500, not 3.5k)."""
    axis: dict[str, Any] = {"title": {"text": title}, "type": "log" if log else "-"}
    if log:
        axis |= {"dtick": 1, "minor": {"ticks": "outside"}}
    if tickformat:
        axis["tickformat"] = tickformat
        if tickformat.endswith("~s") and title.endswith("(s)"):
            axis["ticksuffix"] = "s"  # 20ms, 500µs: SI prefixes on seconds read as units
    return axis | extra


def _figure(data: list[dict[str, Any]], title: str, height: int = 420,
            **layout: Any) -> go.Figure:
    base = {"title": {"text": title}, "height": height,
            "margin": {"l": 10, "r": 10, "t": 50, "b": 10}}
    return go.Figure({"data": data, "layout": base | layout})


def _list(values: Any) -> list:
    return np.asarray(values).tolist()


# --- Compare ----------------------------------------------------------------------------------

def phase_time_figure(estimates: Mapping[str, Estimate]) -> go.Figure:
    """Stacked bars: request time of each model split by phase (ms)."""
    phases: dict[str, dict[str, float]] = {}
    for label, est in estimates.items():
        for phase, t in zip(est.phases()["phase"], est.phases()["time_s"], strict=True):
            phases.setdefault(phase, {})[label] = t * 1e3
    labels = list(estimates)
    data = [{"type": "bar", "name": phase, "x": labels,
             "y": [by.get(lb, 0.0) for lb in labels],
             "hovertemplate": "%{x}: " + phase + " %{y:.4g} ms<extra></extra>"}
            for phase, by in phases.items()]
    return _figure(data, "Request time by phase", barmode="stack",
                   yaxis=_axis("time per request (ms)", tickformat=None))


def shared_time_range_ms(estimates) -> float:
    """An x range (ms) that holds the longest op of every estimate: one scale for charts
    that are compared side by side."""
    longest = max((float(est.breakdown()["time_s"].max()) for est in estimates), default=0.0)
    return longest * 1e3 * 1.05 if longest > 0 else 1.0


def short_op_name(phase: str, op: str) -> str:
    """The op name without the stack prefix its phase already names
    ('block_decoder.step', 'block_decoder.layers.mlp.up' -> 'layers.mlp.up')."""
    stack = phase.split(".")[0] + "."
    return op.removeprefix(stack) if "." in phase else op


def op_time_figure(est: Estimate, title: str, x_max_ms: float | None = None) -> go.Figure:
    """Horizontal bars: time of every (phase, op), coloured by what bounds it; `x_max_ms`
    fixes the x range (to share one scale between compared charts)."""
    df = est.breakdown()
    df = df[df["time_s"] > 0].iloc[::-1]
    labels = [f"{phase} · {short_op_name(phase, op)}" for phase, op in zip(df["phase"],
                                                                          df["name"], strict=True)]
    df = df.assign(op=labels)
    data = []
    for bound, part in df.groupby("bound", sort=False):
        data.append({
            "type": "bar", "orientation": "h", "name": f"{bound}-bound",
            "x": _list(part["time_s"] * 1e3), "y": part["op"].tolist(),
            "marker": {"color": BOUND_COLORS.get(str(bound), "#999")},
            "customdata": _list(np.stack([part["t_math_s"] * 1e3, part["t_mem_s"] * 1e3], -1)),
            "hovertemplate": "%{y}<br>time %{x:.4g} ms<br>T_math %{customdata[0]:.4g} ms"
                             "<br>T_mem %{customdata[1]:.4g} ms<extra></extra>"})
    xaxis = _axis("time per request (ms)", tickformat=None)
    if x_max_ms is not None:
        xaxis["range"] = [0, x_max_ms]
    return _figure(data, title, height=max(320, 16 * len(df) + 120), xaxis=xaxis,
                   yaxis={"categoryorder": "array", "categoryarray": labels})


# --- Roofline ---------------------------------------------------------------------------------

def roofline_points(est: Estimate, label: str, pi_flops_per_s: float) -> pd.DataFrame:
    """Ops with FLOPs, placed at (intensity, attained FLOP/s) using the FLOPs the roofline
    time counts (T_math x pi: the causal part for flash-style attention, which skips masked
    tiles), so that in a pure roofline every op lies on the roof."""
    df = est.breakdown()
    df["bytes_total"] = df["weight_bytes"] + df["activation_bytes"] + df["kv_bytes"]
    df["time_flops"] = df["t_math_s"] * pi_flops_per_s
    df = df[(df["time_flops"] > 0) & (df["time_s"] > 0) & (df["bytes_total"] > 0)].copy()
    df["intensity_flops_per_byte"] = df["time_flops"] / df["bytes_total"]
    df["attained_flops_per_s"] = df["time_flops"] / df["time_s"]
    df["side"] = label
    return df


def roofline_figure(pi_flops_per_s: float, beta_bytes_per_s: float,
                    points: pd.DataFrame, title: str,
                    legend_format: str = "{side} ({bound}-bound)") -> go.Figure:
    """Log-log roofline min(pi, beta * I) with the ridge point I* = pi / beta and `points`.

    `points` columns: side, phase, name, flops, bytes_total, intensity_flops_per_byte,
    attained_flops_per_s, bound (as `roofline_points` returns).
    """
    ridge = pi_flops_per_s / beta_bytes_per_s
    xs = points["intensity_flops_per_byte"].to_numpy() if len(points) else np.array([ridge])
    lo = min(float(xs.min()), ridge) / 4
    hi = max(float(xs.max()), ridge) * 4
    grid = np.geomspace(lo, hi, 200)
    data: list[dict[str, Any]] = [
        {"type": "scatter", "x": _list(grid),
         "y": _list(np.minimum(pi_flops_per_s, beta_bytes_per_s * grid)), "mode": "lines",
         "name": "roofline", "line": {"color": "black"}, "hoverinfo": "skip"},
        {"type": "scatter", "x": [ridge, ridge], "y": [pi_flops_per_s / 1e3, pi_flops_per_s],
         "mode": "lines", "line": {"color": "gray", "dash": "dash"}, "showlegend": False,
         "hoverinfo": "skip"},
        {"type": "scatter", "x": [ridge], "y": [pi_flops_per_s], "mode": "markers+text",
         "name": "ridge point", "marker": {"color": "black", "size": 11, "symbol": "x"},
         "text": [f"ridge {ridge:.0f} FLOP/byte"], "textposition": "bottom right",
         "hovertemplate": "ridge point<br>I* = %{x:.3s} FLOP/byte<br>peak %{y:.3s}FLOP/s"
                          "<extra></extra>"},
    ]
    groups = points.groupby(["side", "bound"], sort=False) if len(points) else []
    for i, ((side, bound), part) in enumerate(groups):
        custom = np.stack([part["phase"].astype(str), part["name"].astype(str),
                           part["flops"], part["bytes_total"], part["bound"].astype(str)], -1)
        data.append({
            "type": "scatter", "mode": "markers",
            "x": _list(part["intensity_flops_per_byte"]), "y": _list(part["attained_flops_per_s"]),
            "name": legend_format.format(side=side, bound=bound), "customdata": _list(custom),
            "marker": {"symbol": SIDE_SYMBOLS.get(str(side), "square"), "size": 9,
                       "color": BOUND_COLORS.get(str(bound), PALETTE[i % len(PALETTE)]),
                       "line": {"width": 1, "color": "white"}},
            "hovertemplate": "<b>%{customdata[1]}</b> (%{customdata[0]})<br>"
                             "%{customdata[2]:.3s}FLOP<br>%{customdata[3]:.3s}B moved<br>"
                             "intensity %{x:.3s} FLOP/byte<br>attained %{y:.3s}FLOP/s<br>"
                             "bound: %{customdata[4]}<extra>" + str(side) + "</extra>"})
    return _figure(data, title, height=520,
                   xaxis=_axis("arithmetic intensity (FLOP/byte)", log=True),
                   yaxis=_axis("attained FLOP/s", log=True))


# --- Design space -----------------------------------------------------------------------------

def line_figure(df: pd.DataFrame, x: str, y: str, series: str, title: str, x_title: str,
                y_title: str, log_x: bool = True, log_y: bool = False) -> go.Figure:
    """One line (with markers) per value of column `series`."""
    data = []
    for name, part in df.groupby(series, sort=False, observed=True):
        part = part.sort_values(x)
        data.append({"type": "scatter", "mode": "lines+markers", "name": str(name),
                     "x": _list(part[x]), "y": _list(part[y]),
                     "hovertemplate": f"{name}<br>{x_title} %{{x}}<br>{y_title} %{{y:.4g}}"
                                      "<extra></extra>"})
    return _figure(data, title, xaxis=_axis(x_title, log_x), yaxis=_axis(y_title, log_y))


def grouped_bar_figure(df: pd.DataFrame, x: str, y: str, series: str, title: str,
                       y_title: str, log_y: bool = False) -> go.Figure:
    data = [{"type": "bar", "name": str(name), "x": part[x].astype(str).tolist(),
             "y": _list(part[y]),
             "hovertemplate": f"{name}<br>%{{x}}<br>{y_title} %{{y:.4g}}<extra></extra>"}
            for name, part in df.groupby(series, sort=False, observed=True)]
    return _figure(data, title, barmode="group", yaxis=_axis(y_title, log_y))


def heatmap_figure(pivot: pd.DataFrame, title: str, x_title: str, y_title: str,
                   z_title: str, log_z: bool = True, show=si) -> go.Figure:
    """`pivot`: index = y values, columns = x values, cells = metric (NaN = does not fit);
    `show` writes a cell's value (one style for every cell: 546, 1.09 k)."""
    z = pivot.to_numpy(dtype=float)
    with np.errstate(all="ignore"):
        shown = np.log10(z) if log_z else z
    text = [["" if not np.isfinite(v) else show(v) for v in row] for row in z]
    nan_to_none = [[None if not np.isfinite(v) else float(v) for v in row] for row in shown]
    data = [{"type": "heatmap", "z": nan_to_none, "x": [str(c) for c in pivot.columns],
             "y": [str(i) for i in pivot.index], "text": text, "texttemplate": "%{text}",
             "colorscale": "Viridis",
             "colorbar": {"title": {"text": ("log10 " if log_z else "") + z_title}},
             "hovertemplate": f"{x_title} %{{x}}<br>{y_title} %{{y}}<br>{z_title} %{{text}}"
                              "<extra></extra>"}]
    return _figure(data, title, height=460, xaxis=_axis(x_title, tickformat=None, type="category"),
                   yaxis=_axis(y_title, tickformat=None, type="category"))


def pareto_mask(x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """True where no other point has x <= and y >= with one strictly better: the throughput
    frontier (lower x, e.g. fewer parameters or a lower loss, is better)."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    out = np.ones(len(xs), dtype=bool)
    for i in range(len(xs)):
        dominated = (xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i]))
        out[i] = not dominated.any()
    return out


def pareto_figure(df: pd.DataFrame, x: str, x_title: str, title: str) -> go.Figure:
    """Throughput vs `x` per preset, one line per kind; columns: name, kind, `x`,
    throughput_tokens_per_s, pareto (bool: on the frontier of both kinds together)."""
    data = []
    for kind, part in df.groupby("kind", sort=False, observed=True):
        part = part.sort_values(x)
        data.append({
            "type": "scatter", "mode": "lines+markers+text", "name": str(kind),
            "x": _list(part[x]), "y": _list(part["throughput_tokens_per_s"]),
            "text": part["name"].tolist(), "textposition": "top center",
            "marker": {"color": KIND_COLORS.get(str(kind)), "size": 11,
                       "symbol": ["star" if p else "circle" for p in part["pareto"]]},
            "hovertemplate": "%{text}<br>" + x_title + " %{x:.3s}<br>"
                             "throughput %{y:,.0f} tok/s<extra></extra>"})
    return _figure(data, title, height=460, xaxis=_axis(x_title, log=x != "loss"),
                   yaxis=_axis("throughput (generated tokens/s)", log=True))


# --- Capacity ---------------------------------------------------------------------------------

def capacity_figure(curve: pd.DataFrame, batch: int, tpot_bound_s: float | None,
                    title: str) -> go.Figure:
    """TPOT (left axis) and replica throughput (right axis) against batch; the chosen batch
    (dashed) and the TPOT bound (dotted) marked."""
    tpot_ms = curve["tpot_s"].to_numpy() * 1e3
    lo, hi = float(tpot_ms.min()), float(tpot_ms.max())
    data: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "lines", "name": "TPOT (ms)", "x": _list(curve["batch"]),
         "y": _list(tpot_ms)},
        {"type": "scatter", "mode": "lines", "name": "throughput (tok/s)", "yaxis": "y2",
         "x": _list(curve["batch"]), "y": _list(curve["throughput_tokens_per_s"])},
        {"type": "scatter", "mode": "lines", "name": f"chosen batch {batch}",
         "x": [batch, batch], "y": [lo, max(hi, (tpot_bound_s or 0) * 1e3)],
         "line": {"color": "green", "dash": "dash"}},
    ]
    if tpot_bound_s is not None:
        data.append({"type": "scatter", "mode": "lines", "name": "TPOT bound",
                     "x": [float(curve["batch"].min()), float(curve["batch"].max())],
                     "y": [tpot_bound_s * 1e3] * 2, "line": {"color": "red", "dash": "dot"}})
    # legend below the plot and a right margin for the second axis's title (it was clipped)
    return _figure(data, title, xaxis=_axis("batch per replica", log=True, tickformat="d"),
                   yaxis=_axis("TPOT (ms)", tickformat=None, rangemode="tozero"),
                   yaxis2=_axis("throughput (tok/s)", overlaying="y", side="right",
                                rangemode="tozero", automargin=True, tickmode="auto",
                                nticks=6, showgrid=False),
                   legend={"orientation": "h", "y": -0.25, "x": 0},
                   margin={"l": 10, "r": 70, "t": 50, "b": 10})


# --- Validation -------------------------------------------------------------------------------

def validation_scatter(df: pd.DataFrame, title: str, predicted: str = "predicted_s"
                       ) -> go.Figure:
    """Predicted (column `predicted`) vs measured seconds (log-log), one colour per phase,
    identity line y = x."""
    both = pd.concat([df[predicted], df["measured_s"]])
    lo, hi = float(both.min()) / 2, float(both.max()) * 2
    data: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "lines", "x": [lo, hi], "y": [lo, hi],
         "name": "predicted = measured", "line": {"color": "black", "dash": "dash"},
         "hoverinfo": "skip"}]
    for phase, part in df.groupby("phase", sort=False):
        data.append({
            "type": "scatter", "mode": "markers", "name": str(phase),
            "x": _list(part["measured_s"]), "y": _list(part[predicted]),
            "customdata": np.stack([part["model"].astype(str), part["device"].astype(str)],
                                   -1).tolist(),
            "hovertemplate": "%{customdata[0]} on %{customdata[1]}<br>measured %{x:.4g} s<br>"
                             "predicted %{y:.4g} s<extra>" + str(phase) + "</extra>"})
    return _figure(data, title, height=460,
                   xaxis=_axis("measured (s)", log=True, tickformat="~g"),
                   yaxis=_axis("predicted (s)", log=True, tickformat="~g"))


def op_profile_figure(table: pd.DataFrame, title: str, top: int = 16) -> go.Figure:
    """Horizontal bars, measured beside predicted ms per op, the `top` largest ops."""
    part = table.assign(size=table[["measured_s", "predicted_s"]].max(axis=1))
    part = part.nlargest(top, "size").iloc[::-1]
    data = [{"type": "bar", "orientation": "h", "name": name, "y": part["op"].tolist(),
             "x": _list(part[col] * 1e3),
             "hovertemplate": "%{y}<br>" + name + " %{x:.4g} ms<extra></extra>"}
            for col, name in (("measured_s", "measured"), ("predicted_s", "predicted"))]
    return _figure(data, title, height=max(320, 26 * len(part) + 120), barmode="group",
                   xaxis=_axis("ms per region", tickformat=None))


# --- Paper ------------------------------------------------------------------------------------

def paper_figure(table: pd.DataFrame, setting: str) -> go.Figure:
    """Measured (paper) vs predicted throughput per preset for one setting (log y)."""
    part = table[table["setting"] == setting]
    series = [("paper_throughput_tok_s", "paper (measured)")]
    series += [(c, "predicted: " + c.removesuffix("_throughput_tok_s")) for c in table.columns
               if c.endswith("_throughput_tok_s") and not c.startswith("paper")]
    data = [{"type": "bar", "name": name, "x": part["paper_name"].tolist(),
             "y": _list(part[col]),
             "hovertemplate": "%{x}<br>" + name + " %{y:,.0f} tok/s<extra></extra>"}
            for col, name in series]
    return _figure(data, f"Paper Table 1 vs predictions ({setting})", barmode="group",
                   yaxis=_axis("throughput (generated tokens/s)", log=True))
