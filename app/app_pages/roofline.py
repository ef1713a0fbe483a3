"""Roofline: the device's roofline (log-log) with every op of the current estimates on it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import figures, fmt, inputs, tables, ui

ctx = inputs.context()
st.title("Roofline")
ests = ui.estimates_or_stop(ctx)

hw = ctx.hardware
# the sidebar's compute dtype (docs/precision.md), of the first side shown
dtype = ctx.implementation(next(iter(ests))).compute_dtype
pi = hw.compute_flops_per_s(dtype)
beta = hw.bandwidth_bytes_per_s()
c1, c2, c3 = st.columns(3)
c1.metric(f"Compute ({dtype})", fmt.si(pi, "FLOP/s"))
c2.metric("Memory bandwidth", fmt.si(beta, "B/s"))
c3.metric("Ridge point", f"{pi / beta:,.1f} FLOP/byte")

sides = st.multiselect("Models", list(ests), default=list(ests), key="rf_sides")
points = pd.concat([figures.roofline_points(ests[s], s, pi) for s in sides] or [pd.DataFrame()],
                   ignore_index=True)
phases = list(dict.fromkeys(points["phase"])) if len(points) else []
phase = st.selectbox("Phase", ["all phases", *phases], key="rf_phase")
if phase != "all phases":
    points = points[points["phase"] == phase]
title = f"{hw.name}: ops of one request ({phase})"
st.plotly_chart(figures.roofline_figure(pi, beta, points, title), width="stretch",
                key="rf_chart")
st.caption("Each op sits at its arithmetic intensity (FLOPs / bytes moved) and attained rate "
           "(FLOPs / roofline time). Left of the ridge point an op is memory-bound. Ops with no "
           "FLOPs (norms, activations, copies) are in the table only.")

st.subheader("Ops")
ops = pd.concat([tables.op_table(ests[s]).assign(side=s) for s in sides] or [pd.DataFrame()],
                ignore_index=True)
if len(ops):
    if phase != "all phases":
        ops = ops[ops["phase"] == phase]
    counts = ops["bound"].value_counts()
    st.write(", ".join(f"{n} {b}-bound" for b, n in counts.items()) + f" ops; "
             f"{fmt.seconds(float(ops['time_s'].sum()))} in total.")
    cols = ["side", "phase", "name", "flops", "bytes_total", "intensity_flops_per_byte",
            "t_math_s", "t_mem_s", "time_s", "bound"]
    st.dataframe(ops[cols], hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(
                                    format="compact" if c in ("flops", "bytes_total")
                                    else "%.4g") for c in cols[3:9]})
    ui.download("Ops (CSV)", lambda: tables.frame_csv(ops), "roofline_ops.csv", "text/csv",
                "dl_roofline")
