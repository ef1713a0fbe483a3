"""Compare: a vanilla and a Block Transformer side by side on one device and workload."""

from __future__ import annotations

import streamlit as st

from app import compute, explain, figures, fmt, inputs, tables, ui
from costmodel.spec import BlockSpec, VanillaSpec

ctx = inputs.context()
st.title("Compare")
ests = ui.estimates_or_stop(ctx)
specs = ctx.models()

with st.expander("What is compared, and why these two models", expanded=True):
    st.markdown(explain.ARCHITECTURES)
    v_spec, b_spec = specs.get("Vanilla"), specs.get("Block")
    if isinstance(v_spec, VanillaSpec) and isinstance(b_spec, BlockSpec):
        st.markdown(explain.pairing_note(v_spec, b_spec))

hw = ctx.hardware
wl = ctx.workload
st.caption(f"{hw.name} · prompt {wl.prompt_tokens} · generated {wl.generated_tokens} · "
           f"batch {wl.batch} · profile {ctx.profile}. Throughput counts generated tokens "
           "only; memory per sample is KV cache plus workspace.")

cols = st.columns(3 if len(ests) == 2 else len(ests))
for col, (label, est) in zip(cols, ests.items(), strict=False):
    with col:
        st.subheader(f"{label}: {fmt.model_name(est.model)}")
        for m in tables.COMPARE_METRICS:
            st.metric(f"{label} {m.label}", m.show(getattr(est, m.key)))
        st.caption(f"batch used: {est.batch:,} · {ctx.precision_text(label)}")
        if not est.fits:
            st.warning(f"{label}: batch {est.batch} does not fit the device memory "
                       f"(max batch {est.max_batch}).")
statement, expected = compute.expectations(ctx)
if statement:
    st.info(statement)
if expected:
    ecols = st.columns(len(expected))
    for col, (label, exp) in zip(ecols, expected.items(), strict=False):
        col.metric(f"{label} expected throughput (calibrated)",
                   f"{exp.throughput_tokens_per_s:,.0f} tok/s",
                   help=f"bound {ests[label].throughput_tokens_per_s:,.0f} tok/s; expected "
                        f"request time {exp.request_time_s:.4g} s at batch {exp.batch:,}")
table = tables.compare_table(ests)
if len(ests) == 2:
    with cols[2]:
        st.subheader("Block ÷ vanilla")
        for m, r in zip(tables.COMPARE_METRICS, table[tables.RATIO_COLUMN], strict=False):
            v = explain.verdict(m.key, r)
            color = {"better": "normal", "worse": "inverse"}.get(v.word, "off")
            st.metric(f"{m.label} ratio", fmt.ratio(r), delta=v.text or None,
                      delta_color=color, delta_arrow="off",
                      help="block ÷ vanilla; green: better for the Block Transformer, red: "
                           "worse")

st.subheader("All metrics")
st.dataframe(tables.compare_display(ests), hide_index=True, width="stretch")

st.subheader("Where the time goes")
st.plotly_chart(figures.phase_time_figure(ests), width="stretch", key="phase_chart")
x_max_ms = figures.shared_time_range_ms(ests.values())  # one scale for both charts
for label, est in ests.items():
    st.plotly_chart(figures.op_time_figure(est, f"{label}: time per op and phase "
                                                "(colour: what bounds it; same scale)",
                                           x_max_ms=x_max_ms),
                    width="stretch", key=f"ops_{label}")

d1, d2, d3 = st.columns(3)
with d1:
    ui.download("Metrics (CSV)", lambda: tables.frame_csv(table), "compare_metrics.csv",
                "text/csv", "dl_compare_csv")
with d2:
    ui.download("Per-op breakdown (CSV)", lambda: tables.breakdowns_csv(ests),
                "compare_ops.csv", "text/csv", "dl_ops_csv")
with d3:
    ui.download("Summaries (JSON)", lambda: tables.summaries_json(ests), "compare.json",
                "application/json", "dl_compare_json")
