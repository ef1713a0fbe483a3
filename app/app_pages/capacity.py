"""Capacity planner: layout (tp, pp), batch, memory, GPUs and cost for a throughput target or
latency bound (docs/parallelism.md 5)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import figures, fmt, inputs, ui
from app.tables import layouts_table
from costmodel.capacity import batch_curve, plan_capacity
from costmodel.parallel import Parallelism

MODES = {"throughput": "Throughput target", "latency": "Latency bound (TPOT)",
         "both": "Both"}

ctx = inputs.context()
st.title("Capacity planner")
models = ui.models_or_stop(ctx)
hw, wl = ctx.hardware, ctx.workload
st.caption(f"One replica = tp x pp {hw.name} GPUs holding the whole model. Prompt "
           f"{wl.prompt_tokens}, generated {wl.generated_tokens}, profile {ctx.profile}; the "
           "planner chooses the batch (the sidebar's batch is not used).")
LAYOUTS = {"sidebar": f"Sidebar's layout (tp {ctx.parallelism.tp}, pp {ctx.parallelism.pp})",
           "search": "Search tp x pp (up to 8 GPUs per replica)"}
layout = st.radio("Layout", list(LAYOUTS), key="cap_layout", horizontal=True,
                  format_func=LAYOUTS.get)

side = st.radio("Model", list(models), key="cap_side", horizontal=True)
mode = st.radio("Target", list(MODES), key="cap_mode", horizontal=True, format_func=MODES.get)
c1, c2, c3 = st.columns(3)
target = c1.number_input("Target throughput (generated tokens/s, whole fleet)", key="cap_target",
                         value=1_000_000, step=100_000, format="%d",
                         disabled=mode == "latency", help="a whole number of tokens per second")
c1.caption(f"= {fmt.si(float(target), 'tok/s')}")
bound_ms = c2.number_input("TPOT bound (ms per generated token)", key="cap_tpot_ms", value=20.0,
                           step=1.0, format="%g", disabled=mode == "throughput")
price = c3.number_input("Price per GPU-hour (0 = no cost)", key="cap_price", value=0.0,
                        step=0.5, help="any currency; the cost comes out in the same one")

spec = models[side]
try:
    plan = plan_capacity(
        spec, hw, wl, ctx.profile,
        target_tokens_per_s=None if mode == "latency" else float(target),
        tpot_bound_s=None if mode == "throughput" else bound_ms * 1e-3,
        price_per_gpu_hour=None if price == 0 else price,
        parallelism="search" if layout == "search" else ctx.parallelism,
    )
except ValueError as e:
    st.error(f"Capacity planner — {e}")
    st.stop()

st.success(f"Chosen layout: {plan.reason}")
st.info(f"Figures: {plan.basis}")
r0 = st.columns(4)
r0[0].metric("Tensor parallel (tp)", fmt.count(plan.tp))
r0[1].metric("Pipeline stages (pp)", fmt.count(plan.pp))
r0[2].metric("GPUs per replica", fmt.count(plan.gpus_per_replica))
r0[3].metric("Memory per GPU", fmt.bytes_(plan.memory_bytes_per_gpu))
r1 = st.columns(4)
r1[0].metric("Batch per replica", fmt.count(plan.batch), help=f"limited by {plan.limited_by}")
r1[1].metric("Memory per replica", fmt.bytes_(plan.memory_bytes_per_replica))
r1[2].metric("Throughput per replica", fmt.tokens_per_s(plan.throughput_tokens_per_s_per_replica))
r1[3].metric("GPUs (replicas)", fmt.count(plan.gpus))
r2 = st.columns(4)
r2[0].metric("TPOT at that batch", fmt.seconds(plan.tpot_s))
r2[1].metric("TTFT at that batch", fmt.seconds(plan.ttft_s))
r2[2].metric("Fleet throughput", fmt.si(plan.throughput_tokens_per_s_total, "tok/s"),
             help=fmt.tokens_per_s(plan.throughput_tokens_per_s_total))
r2[3].metric("Cost per million generated tokens", fmt.money(plan.cost_per_million_tokens),
             help="every replica busy; price / (3600 × replica throughput) × 1e6")
st.write(f"The batch is limited by **{plan.limited_by}**"
         + (f"; the fleet costs {fmt.money(plan.cost_per_hour)} per hour, "
            f"{fmt.money(plan.cost_per_million_tokens_at_target)} per million tokens at the "
            "target rate" if plan.cost_per_hour is not None and plan.target_tokens_per_s
            else "") + ".")

st.subheader("Layouts compared")
st.dataframe(layouts_table(plan), hide_index=True, key="cap_layouts")

st.subheader("Inverse questions")
q = st.columns(3)
q[0].metric("Max batch", fmt.count(plan.max_batch))
q[1].metric("Compute-bound batch", fmt.count(plan.compute_bound_batch),
            help="batch at which a decode step's T_math reaches T_mem (∞: never)")
q[2].metric("KV reads overtake weights past",
            f"{fmt.count(plan.kv_overtakes_weights_context)} tokens",
            help="cached context at which a decode step reads more KV-cache than weight bytes, "
                 "at the planned batch")

curve = batch_curve(spec, hw, wl, ctx.profile, max_batch=plan.max_batch,
                    parallelism=Parallelism(tp=plan.tp, pp=plan.pp))
if len(curve) > 400:  # plot a log-spaced subset; the plan used every batch
    idx = np.unique(np.geomspace(1, len(curve), 400).astype(int) - 1)
    curve = curve.iloc[np.union1d(idx, [plan.batch - 1])]
st.plotly_chart(figures.capacity_figure(curve, plan.batch, plan.tpot_bound_s,
                                        f"{spec.name} on {hw.name}: TPOT and throughput vs batch"),
                width="stretch", key="cap_chart")
ui.download("Plan (JSON)", lambda: plan.model_dump_json(indent=2), "capacity_plan.json",
            "application/json", "dl_plan")
