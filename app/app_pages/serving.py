"""Serving under load: p95 TTFT/TPOT vs request rate and the max sustainable rate (serving)."""

from __future__ import annotations

import json

import streamlit as st
from pydantic import ValidationError

from app import inputs, serving_view, ui
from costmodel.errors import describe_validation_error
from serving import SLO, SchedulerConfig

ctx = inputs.context()
st.title("Serving")
models = ui.models_or_stop(ctx)
hw, wl = ctx.hardware, ctx.workload
st.caption(f"A continuous-batching server on one {hw.name} per replica (serving simulator, "
           f"docs/serving.md): Poisson arrivals, prompt {wl.prompt_tokens}, generated "
           f"{wl.generated_tokens} tokens, profile {ctx.profile}. The sidebar's batch is not "
           "used: the scheduler forms batches as requests arrive.")

c = st.columns(5)
ttft = c[0].number_input("SLO TTFT (s)", key="srv_ttft", value=1.0, step=0.1)
tpot_ms = c[1].number_input("SLO TPOT (ms)", key="srv_tpot_ms", value=50.0, step=5.0)
pct = c[2].number_input("Percentile", key="srv_pct", value=95.0, step=1.0)
policy = c[3].selectbox("Scheduler", ["prefill-first", "chunked"], key="srv_policy")
requests = c[4].number_input("Requests per run", key="srv_requests", value=300, step=100,
                             min_value=10, max_value=20000)
try:
    slo = SLO(ttft_s=ttft, tpot_s=tpot_ms * 1e-3, percentile=pct)
    sched = SchedulerConfig(policy=policy)
except ValidationError as e:
    st.error(f"Serving — {describe_validation_error(e)}")
    st.stop()


@st.cache_data(show_spinner="Simulating the server at a range of rates…", max_entries=16)
def _plan(specs_json: str, hw_json: str, prompt: int, generated: int, slo_json: str,
          requests: int, sched_json: str, profile: str):
    from pydantic import TypeAdapter

    from costmodel.hardware import Hardware
    from costmodel.spec import ModelSpec

    specs = {k: TypeAdapter(ModelSpec).validate_python(v)
             for k, v in json.loads(specs_json).items()}
    return serving_view.plan(specs, Hardware.model_validate_json(hw_json), prompt, generated,
                             SLO.model_validate_json(slo_json), requests,
                             SchedulerConfig.model_validate_json(sched_json), profile)


try:
    results, curves = _plan(
        json.dumps({k: m.model_dump(mode="json") for k, m in models.items()}),
        hw.model_dump_json(), wl.prompt_tokens, wl.generated_tokens, slo.model_dump_json(),
        int(requests), sched.model_dump_json(), ctx.profile)
except ValueError as e:
    st.error(f"Serving — {e}")
    st.stop()

cols = st.columns(len(results))
for col, (label, res) in zip(cols, results.items(), strict=True):
    col.metric(f"{label} max rate per replica",
               f"{res.max_rate_per_s:.3g} req/s" if res.met else "none",
               help=res.answer)
for label, res in results.items():
    st.write(f"**{label}** ({res.model}): {res.answer}")
st.plotly_chart(serving_view.figure(curves, results, slo), width="stretch", key="srv_chart")
st.dataframe(curves, hide_index=True)
