"""Serving page builders (pure, tested directly): rate curves and the max sustainable rate of
each model from the serving simulator (docs/serving.md), and their figure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from serving import SLO, MaxRate, SchedulerConfig, max_rate, simulate

CURVE_COLUMNS = ("label", "model", "rate_per_s", "ttft_p_s", "tpot_p_s", "sustainable")


def plan(label_specs: dict[str, Any], hardware: Any, prompt: int, generated: int, slo: SLO,
         requests: int, scheduler: SchedulerConfig, implementation: str = "static",
         points: int = 8) -> tuple[dict[str, MaxRate], pd.DataFrame]:
    """Per model: `max_rate`, and a curve of p(SLO) TTFT/TPOT over rates around it (from a
    twentieth of the max rate, or of the nearly idle rate, to twice it), same seeded requests."""
    results: dict[str, MaxRate] = {}
    rows: list[dict[str, Any]] = []
    for label, spec in label_specs.items():
        res = max_rate(spec, hardware, prompt, generated, slo, requests=requests,
                       scheduler=scheduler, implementation=implementation)
        results[label] = res
        anchor = res.max_rate_per_s if res.met else min(p.rate_per_s for p in res.probes)
        for rate in np.geomspace(anchor / 20, anchor * 2, points):
            r = simulate(spec, hardware, float(rate), prompt, generated,
                         duration_s=requests / rate, scheduler=scheduler, slo=slo,
                         implementation=implementation)
            rows.append({"label": label, "model": r.model, "rate_per_s": float(rate),
                         "ttft_p_s": r.ttft_at_slo_s, "tpot_p_s": r.tpot_at_slo_s,
                         "sustainable": r.sustainable})
    return results, pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def figure(curves: pd.DataFrame, results: dict[str, MaxRate], slo: SLO) -> go.Figure:
    """Two panels (TTFT, TPOT at the SLO percentile vs rate, log-log), the SLO as dashed lines,
    each model's max sustainable rate as a dotted vertical line."""
    from plotly.subplots import make_subplots

    p = f"p{slo.percentile:g}"
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"{p} TTFT", f"{p} TPOT"))
    colors = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")
    for i, (label, df) in enumerate(curves.groupby("label", sort=False)):
        c = colors[i % len(colors)]
        for col, (y, scale, unit) in enumerate((("ttft_p_s", 1.0, "s"),
                                                ("tpot_p_s", 1e3, "ms")), start=1):
            fig.add_trace(go.Scatter(
                x=df["rate_per_s"], y=df[y] * scale, mode="lines+markers", name=label,
                legendgroup=label, showlegend=col == 1, line={"color": c},
                hovertemplate=f"{label}: %{{x:.3g}} req/s, %{{y:.3g}} {unit}<extra></extra>"),
                row=1, col=col)
            res = results.get(label)
            if res is not None and res.met:
                fig.add_vline(x=res.max_rate_per_s, line={"color": c, "dash": "dot"},
                              row=1, col=col)
    fig.add_hline(y=slo.ttft_s, line={"color": "red", "dash": "dash"}, row=1, col=1,
                  annotation_text=f"SLO {slo.ttft_s:g} s")
    fig.add_hline(y=slo.tpot_s * 1e3, line={"color": "red", "dash": "dash"}, row=1, col=2,
                  annotation_text=f"SLO {slo.tpot_s * 1e3:g} ms")
    fig.update_xaxes(type="log", title_text="request rate per replica (requests/s)")
    fig.update_yaxes(type="log", title_text="s", row=1, col=1)
    fig.update_yaxes(type="log", title_text="ms", row=1, col=2)
    fig.update_layout(height=440, margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig
