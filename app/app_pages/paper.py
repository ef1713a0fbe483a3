"""Paper: Table 1 (paper v2, docs/model.md 5.2) beside predictions for every implementation profile
(roofline bounds) and the calibrated expectations, with the held-out error of the calibration,
the Spearman rank agreement over the 20 rows and the matched-pair ratios (docs/model.md 5.3) — the
`blockroof paper` table (docs/published.md)."""

from __future__ import annotations

import streamlit as st

from app import cache, figures, inputs, tables, ui
from costmodel.calibration import calibration_for
from costmodel.paper import CALIBRATED, SETTINGS, mape, spearman

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
           "max batch with the paper's 2 GiB stop rule as the memory reserve. Each profile's "
           "column is a roofline BOUND (predicted / measured says how far the code runs from "
           "it); calibrated-* columns are the calibrated expectation of a stored record.")
try:
    table, ratios = cache.paper_tables(hw_id)
except ValueError as e:
    st.error(f"Paper — {e}")
    st.stop()

st.plotly_chart(figures.paper_figure(table, setting), width="stretch", key="paper_chart")
part = table[table["setting"] == setting]
preds = [c.removesuffix("_throughput_tok_s") for c in table.columns
         if c.endswith("_throughput_tok_s") and not c.startswith("paper")]
cols = ["paper_name", "loss", "paper_throughput_tok_s"]
cols += [f"{p}_{q}" for p in preds for q in ("throughput_tok_s", "over_paper")]
cols += ["paper_memory_MB"] + [f"{p}_memory_per_sample_MiB" for p in preds]
cols += [f"{p}_max_batch" for p in preds]
st.dataframe(part[cols], hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.4g") for c in cols[1:]})

st.subheader("Agreement over the 20 rows (both settings)")
rho, err = spearman(table), mape(table)
st.dataframe([{"prediction": p, "Spearman (rank agreement)": rho[p], "MAPE %": err[p]}
              for p in preds], hide_index=True, width="stretch")
for p in CALIBRATED:
    rec = calibration_for(hw_id, p)
    if rec is not None:
        st.caption(f"calibrated-{p}: {rec.summary}. The column above is in-sample (fitted on "
                   "this table); the held-out MAPE is the seeded split's.")

st.subheader("Matched pairs: block / vanilla throughput")
pr = ratios[ratios["setting"] == setting]
st.dataframe(pr, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3g")
                            for c in pr.columns if c.endswith("_ratio")})
d1, d2 = st.columns(2)
with d1:
    ui.download("Table (CSV)", lambda: tables.frame_csv(table), "paper_table.csv", "text/csv",
                "dl_paper")
with d2:
    ui.download("Pair ratios (CSV)", lambda: tables.frame_csv(ratios), "paper_pairs.csv",
                "text/csv", "dl_pairs")
