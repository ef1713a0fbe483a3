"""Design space: sweeps (line charts), a batch x prompt heatmap, the presets' Pareto view."""

from __future__ import annotations

import streamlit as st

from app import cache, design, figures, fmt, inputs, tables, ui

ctx = inputs.context()
st.title("Design space")
models = ui.models_or_stop(ctx)
hw, wl = ctx.hardware, ctx.workload
st.caption(f"{hw.name} · profile {ctx.profile} · other inputs from the sidebar (batch "
           f"{wl.batch}, prompt {wl.prompt_tokens}, generated {wl.generated_tokens}).")

c1, c2 = st.columns(2)
metric = c1.selectbox("Metric", list(design.METRICS), key="ds_metric",
                      format_func=lambda m: f"{design.METRICS[m].label} ({design.METRICS[m].unit})")
axis = c2.selectbox("Sweep over", list(design.AXES), key="ds_axis",
                    format_func=design.AXES.get)
mc = design.METRICS[metric]

st.subheader(f"{mc.label} vs {design.AXES[axis].lower()}")
devices = []
if axis == "hardware":
    db = cache.hardware_database()
    default = [i for i in ("h100-sxm-80gb", "h200-sxm-141gb", "a100-sxm-80gb", "b200", "l40s",
                           "mi300x") if i in db]
    chosen = st.multiselect("Devices", list(db), default=default, key="ds_devices")
    devices, skipped = design.usable_hardware([db[i] for i in chosen], ctx.profile)
    if skipped:
        st.caption(f"Left out (no {ctx.profile} compute dtype rate): {', '.join(skipped)}")
try:
    df = design.axis_sweep(models, hw, wl, ctx.profile, axis, metric, devices)
except ValueError as e:
    st.error(str(e))
    df = None
if df is not None and not df.empty:
    if axis == "hardware":
        fig = figures.grouped_bar_figure(df, "x", "value", "side", f"{mc.label} per device",
                                         f"{mc.label} ({mc.unit})", log_y=mc.log)
    else:
        fig = figures.line_figure(df, "x", "value", "side", f"{mc.label} vs {design.AXES[axis]}",
                                  design.AXES[axis], f"{mc.label} ({mc.unit})",
                                  log_x=True, log_y=mc.log)
    st.plotly_chart(fig, width="stretch", key="ds_line")
    if axis == "batch":
        st.caption("Batches that do not fit the device memory are left out.")
    ui.download("Sweep (CSV)", lambda: tables.frame_csv(df), f"sweep_{axis}.csv", "text/csv",
                "dl_sweep")

st.subheader("Heatmap: batch × prompt length")
side = st.radio("Model", list(models), key="ds_heat_side", horizontal=True)
try:
    pivot = design.heatmap(models[side], hw, wl, ctx.profile, metric)
    st.plotly_chart(figures.heatmap_figure(pivot, f"{side}: {mc.label}", "batch",
                                           "prompt tokens", mc.label, log_z=mc.log,
                                           show=fmt.for_unit(mc.unit)),
                    width="stretch", key="ds_heat")
    st.caption("Blank cells: the batch does not fit the device memory at that prompt length.")
except ValueError as e:
    st.error(str(e))

st.subheader("Pareto: throughput vs model size (the paper's presets)")
x = st.selectbox("x axis", list(design.PARETO_X), key="ds_pareto_x",
                 format_func=design.PARETO_X.get)
try:
    par = design.pareto(hw, wl, ctx.profile, x)
    st.plotly_chart(figures.pareto_figure(par, x, design.PARETO_X[x],
                                          f"Throughput vs {design.PARETO_X[x]} on {hw.name}"),
                    width="stretch", key="ds_pareto")
    st.caption("Stars: on the frontier (no preset is both smaller and faster).")
    st.dataframe(par, hide_index=True, width="stretch", column_config={
        "params_total": st.column_config.NumberColumn(format="compact"),
        "params_non_embedding": st.column_config.NumberColumn(format="compact"),
        "throughput_tokens_per_s": st.column_config.NumberColumn(format="%.0f")})
    ui.download("Pareto table (CSV)", lambda: tables.frame_csv(par), "pareto.csv", "text/csv",
                "dl_pareto")
except ValueError as e:
    st.error(str(e))
