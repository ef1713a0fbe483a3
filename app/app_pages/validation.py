"""Validation: predicted (uncalibrated or calibrated) vs measured from the stored datasets
(validation/results/**/*.jsonl and the reports beside them)."""

from __future__ import annotations

import streamlit as st

from app import cache, figures, inputs, tables, ui, validation_data
from costmodel.implementation import get_implementation

ctx = inputs.context()
st.title("Validation")
data = validation_data.load_results()
if data.problems:
    with st.expander(f"{len(data.problems)} line(s) skipped"):
        st.code("\n".join(data.problems[:200]))
if data.empty:
    st.info(validation_data.EMPTY_MESSAGE)
    st.stop()

df = data.frame
st.caption(f"{len(df)} points from {len(data.files)} dataset(s): {', '.join(data.files)}")
c1, c2 = st.columns(2)
devices = sorted(df["device"].unique())
chosen_devices = c1.multiselect("Devices", devices, default=devices, key="val_devices")
models = sorted(df["model"].unique())
chosen_models = c2.multiselect("Models", models, default=models, key="val_models")
df = df[df["device"].isin(chosen_devices) & df["model"].isin(chosen_models)]
has_calibrated = "predicted_calibrated_s" in df.columns and df["predicted_calibrated_s"].notna().any()
c1, c2 = st.columns(2)
label = c1.radio("Prediction", list(validation_data.PREDICTIONS), horizontal=True,
                 index=1 if has_calibrated else 0, key="val_prediction",
                 help="Uncalibrated: the roofline at the run's measured peak rates (a lower "
                      "bound). Calibrated: with the efficiencies each run fitted on its train "
                      "split (`validation/results/*/report.md`).")
calibrated = validation_data.PREDICTIONS[label] == "predicted_calibrated_s"
held_out = c2.checkbox("Held-out points only", value=calibrated, key="val_held_out",
                       disabled=not calibrated,
                       help="Points the calibration did not see (about a third of each phase).")
shown = validation_data.with_prediction(df, validation_data.PREDICTIONS[label])
if calibrated and held_out:
    shown = shown[shown["split"] == "test"]
if calibrated and len(shown) < len(df):
    st.caption(f"{len(df) - len(shown)} point(s) left out: "
               + ("not held out, or " if held_out else "")
               + "no report (points.csv) beside their dataset.")
df = shown
if df.empty:
    st.info("No points for this selection.")
    st.stop()

st.metric(f"MAPE ({'held-out' if calibrated and held_out else 'all selected'} points)",
          f"{df['abs_pct_error'].mean():.1f} %")
st.plotly_chart(figures.validation_scatter(df, f"Predicted ({label}) vs measured time",
                                          validation_data.PREDICTIONS[label]), width="stretch",
                key="val_scatter")

st.subheader("MAPE per phase and device")
mape = validation_data.mape_table(df)
st.dataframe(mape, hide_index=True, width="stretch",
             column_config={"mape_pct": st.column_config.NumberColumn(format="%.1f"),
                            "median_ratio": st.column_config.NumberColumn(format="%.3f"),
                            "max_abs_pct_error": st.column_config.NumberColumn(format="%.1f")})

st.subheader("Measured points on the roofline")
points = validation_data.roofline_points(df)
if points.empty:
    st.caption("These datasets carry no per-point FLOPs and bytes, so their points cannot be "
               "placed on a roofline.")
else:
    # each device's points on that device's own record, never on another's (docs/published.md)
    db = cache.hardware_database()
    dtype = get_implementation(ctx.profile).compute_dtype
    for device, dev_points in points.groupby("device", sort=True):
        hw = validation_data.device_record(str(device), db)
        if hw is None:
            st.caption(f"{device}: no hardware record (database or the run's measured "
                       "record), so its points are listed without a roof.")
            st.dataframe(dev_points[["model", "phase", "intensity_flops_per_byte",
                                     "attained_flops_per_s"]], hide_index=True)
            continue
        try:
            st.plotly_chart(
                figures.roofline_figure(hw.compute_flops_per_s(dtype), hw.bandwidth_bytes_per_s(),
                                        dev_points, f"Measured points on the {hw.name} roofline",
                                        legend_format="{side} · {bound}"),
                width="stretch", key=f"val_roofline_{device}")
        except ValueError as e:
            st.error(str(e))

st.subheader("Published measurements")
published = validation_data.load_published()
if not published:
    st.caption("No scored published datasets: `blockroof validate published FILE.csv --out "
               "validation/results/published/<name>` (validation/published/README.md).")
db = cache.hardware_database()
for run, pts in published.items():
    held = pts[pts["split"] == "test"]
    st.markdown(f"**{run}**: {len(pts)} rows, {len(held)} held out")
    if len(held):
        summary = (held.assign(abs_err=held["error_calibrated_pct"].abs(),
                               abs_bound=held["error_bound_pct"].abs())
                   .groupby("metric")[["abs_err", "abs_bound"]].mean().reset_index()
                   .rename(columns={"abs_err": "held-out MAPE % (calibrated)",
                                    "abs_bound": "MAPE % (bound)"}))
        st.dataframe(summary, hide_index=True)
    for hw_id, hw_points in validation_data.published_roofline_points(pts).items():
        hw = db.get(hw_id)
        if hw is None:
            st.caption(f"{hw_id}: not in the hardware database; rows listed without a roof.")
            continue
        try:
            st.plotly_chart(
                figures.roofline_figure(hw.compute_flops_per_s("bf16"),
                                        hw.bandwidth_bytes_per_s(), hw_points,
                                        f"{run} on the {hw.name} datasheet roofline",
                                        legend_format="{side} · {bound}"),
                width="stretch", key=f"pub_roofline_{run}_{hw_id}")
        except ValueError as e:
            st.error(str(e))

st.subheader("One region split by op")
profiles = validation_data.load_op_profiles()
for problem in profiles.problems:
    st.warning(problem)
if not profiles.tables:
    st.caption("No per-op profiles yet: `blockroof validate ops ... --out "
               "validation/results/<run>/ops/<name>.json`.")
else:
    chosen = st.selectbox("Profile", list(profiles.tables), key="val_op_profile",
                          format_func=lambda k: f"{profiles.titles[k]} ({k})")
    table = profiles.tables[chosen]
    st.plotly_chart(figures.op_profile_figure(table, profiles.titles[chosen]),
                    width="stretch", key="val_op_chart")
    st.caption("Measured: exclusive time of the reference's modules under forward hooks; "
               "predicted: the cost model's rows of the same region on the named hardware "
               "record (validation/op_profile.py).")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"ratio": st.column_config.NumberColumn(
                     "predicted / measured", format="%.2f")})

st.subheader("Points")
st.dataframe(df[validation_data.display_columns(df)], hide_index=True, width="stretch")
ui.download("Points (CSV)", lambda: tables.frame_csv(df), "validation_points.csv",
            "text/csv", "dl_validation")
