"""Paper: Table 1 (paper v2, SPEC.md 5.2) beside predictions for both implementation profiles,
with the matched-pair ratios (SPEC.md 5.3) — the `blockroof paper` table."""

from __future__ import annotations

import streamlit as st

from app import cache, figures, inputs, tables, ui
from costmodel.paper import SETTINGS

inputs.context()
st.title("Paper")
db = cache.hardware_database()
ids = list(db)
c1, c2 = st.columns(2)
hw_id = c1.selectbox("Device for the predictions", ids, key="paper_hw",
                     index=ids.index("h100-sxm-80gb") if "h100-sxm-80gb" in ids else 0,
                     format_func=lambda i: f"{db[i].name} ({i})")
setting = c2.radio("Setting", list(SETTINGS), key="paper_setting", horizontal=True,
                   format_func=lambda s: f"{s} (prompt {SETTINGS[s][0]}, "
                                         f"generated {SETTINGS[s][1]})")
st.caption("Measured: paper v2 Table 1 (one H100, bf16, max batch; throughput in generated "
           "tokens/s, memory in MB per sample). Predicted: the same presets at the predicted "
           "max batch with the paper's 2 GiB stop rule as the memory reserve. A roofline is an "
           "upper bound: predicted / measured says how far the official code runs from it.")
try:
    table, ratios = cache.paper_tables(hw_id)
except ValueError as e:
    st.error(f"Paper — {e}")
    st.stop()

st.plotly_chart(figures.paper_figure(table, setting), width="stretch", key="paper_chart")
part = table[table["setting"] == setting]
cols = ["paper_name", "loss", "paper_throughput_tok_s", "static_throughput_tok_s",
        "static_over_paper", "hf-legacy_throughput_tok_s", "hf-legacy_over_paper",
        "paper_memory_MB", "static_memory_per_sample_MiB", "hf-legacy_memory_per_sample_MiB",
        "static_max_batch", "hf-legacy_max_batch"]
st.dataframe(part[cols], hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.4g") for c in cols[1:]})

st.subheader("Matched pairs: block / vanilla throughput")
pr = ratios[ratios["setting"] == setting]
st.dataframe(pr, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3g")
                            for c in ("paper_ratio", "static_ratio", "hf-legacy_ratio")})
d1, d2 = st.columns(2)
with d1:
    ui.download("Table (CSV)", lambda: tables.frame_csv(table), "paper_table.csv", "text/csv",
                "dl_paper")
with d2:
    ui.download("Pair ratios (CSV)", lambda: tables.frame_csv(ratios), "paper_pairs.csv",
                "text/csv", "dl_pairs")
