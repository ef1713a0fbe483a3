"""Formulas: the LaTeX of each cost term, its symbols, its value at the current inputs, and the
paper's relative-cost table derived live from the formulas."""

from __future__ import annotations

import streamlit as st

from app import cache, compute, fmt, formula_view, inputs, relative_costs
from costmodel.metrics import ARGS, METRICS
from costmodel.ops import StackStructure
from costmodel.spec import BlockSpec

ctx = inputs.context()
st.title("Formulas")
models = ctx.models()
if not models:
    st.info("No valid model yet: fix the inputs in the sidebar.")
    st.stop()

side = st.radio("Model", list(models), key="fx_side", horizontal=True)
spec = models[side]
spec_json = cache.spec_json(spec)
kind = st.radio("Term", ["Metric of the request", "One op of one phase"], key="fx_kind",
                horizontal=True)
if kind.startswith("Metric"):
    name = st.selectbox("Metric", list(METRICS), key="fx_metric",
                        index=list(METRICS).index("kv_cache_bytes_per_sample"))
else:
    parts = formula_view.row_parts(cache.names(spec_json, ctx.profile))
    c1, c2, c3 = st.columns(3)
    phase = c1.selectbox("Phase", list(parts), key="fx_phase")
    op = c2.selectbox("Op", list(parts[phase]), key="fx_op")
    quantity = c3.selectbox("Quantity", parts[phase][op], key="fx_quantity")
    name = f"{phase}/{op}/{quantity}"

f, fn = cache.formula_object(name, spec_json, ctx.profile)
st.markdown(f"**`{name}`** for {spec.name} ({spec.kind}), profile `{ctx.profile}`")
if len(f.latex) <= formula_view.LONG_LATEX_CHARS:
    st.latex(f.latex)
else:
    st.caption(f"A long closed form ({len(f.latex):,} LaTeX characters: sums over decode steps "
               "of max(T_math, T_mem) per op). Expand to read it.")
    with st.expander("Show the full expression"):
        st.latex(f.latex)

values = None
if ctx.ready:
    ests, problems = compute.estimates(ctx)
    for p in problems:
        st.error(p)
    if side in ests:
        values = compute.symbol_values(spec, ctx.hardware, ctx.workload, ctx.profile,
                                       ests[side].batch)

st.subheader("Symbols")
legend = formula_view.legend_table(f.expr, values or {})
st.dataframe(legend, hide_index=True, width="stretch",
             column_config={"value": st.column_config.NumberColumn(format="%.6g")})

st.subheader("With the current inputs")
if values is None:
    st.info("Fix the hardware and workload inputs in the sidebar to substitute values.")
else:
    value = float(fn(*[values[a] for a in ARGS]))
    st.metric(f"Value of {name}", fmt.quantity(name, value), help=f"{value!r}")
    if len(f.latex) <= formula_view.LONG_LATEX_CHARS:
        st.latex(formula_view.substituted_latex(f.expr, values) + " = "
                 + formula_view.number_latex(value))
    st.caption(f"batch B = {values[ARGS[0]]:g} (the estimate's batch), prompt S = "
               f"{ctx.workload.prompt_tokens}, generated G = {ctx.workload.generated_tokens}; "
               "hardware rates after efficiencies.")

st.subheader("The paper's relative costs, derived from these formulas (docs/model.md 4.1)")
vanilla = ctx.vanilla
if vanilla is None:
    st.info("Needs a valid vanilla model (the table compares decoders with it).")
else:
    structure = repr((StackStructure.of(vanilla.stack), vanilla.tie_embeddings))
    items = cache.derived_relative_costs(structure, ctx.profile, vanilla)
    blk = ctx.block if isinstance(ctx.block, BlockSpec) else None
    lb, p = (blk.block_length, blk.prefix_length) if blk else (4, 2)
    wl = ctx.workload
    s, g = (wl.prompt_tokens, wl.generated_tokens) if wl else (2048, 128)
    at = relative_costs.evaluate(items, vanilla, lb, p, s, g, ctx.profile)
    for decoder, name in (("block", "Block decoder"), ("token", "Token decoder")):
        st.markdown(f"**{name} ÷ vanilla stack**")
        st.markdown(relative_costs.markdown_table(items, at, decoder))
    st.caption(
        f"Each decoder of {vanilla.name} blockified with N_b = N_t = N and D_b = D_t = D, "
        "against the vanilla stack. Ratios sum the layer ops' row formulas over the whole "
        "request (memory items: the layer part N·∂/∂N of the memory metrics); 'derived' is "
        "the sympy limit as the generated length L = G → ∞ (ceilings dropped), shown as c/L "
        f"when it is 0; 'at inputs' is the exact ratio at L_B = {lb}, P = {p}, prompt {s}, "
        f"generated {g} (a long prompt weighs on it: the token decoder skips the prefill). "
        "Method: app/relative_costs.py.")
