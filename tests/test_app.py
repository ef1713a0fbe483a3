"""The dashboard in-process (streamlit AppTest): every page renders, key widgets change the shown
numbers to what the API computes for the same inputs, bad input shows st.error, never a
traceback."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from app import fmt  # noqa: E402
from app.validation_data import RESULTS_ENV  # noqa: E402
from costmodel import Workload, estimate, formula, get_hardware, sweep  # noqa: E402
from costmodel.capacity import plan_capacity  # noqa: E402
from costmodel.hf_config import spec_from_hf_config  # noqa: E402
from costmodel.paper import paper_table  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"
PAGES = ("compare", "design_space", "roofline", "formulas", "capacity", "validation", "paper")
TITLES = {"compare": "Compare", "design_space": "Design space", "roofline": "Roofline",
          "formulas": "Formulas", "capacity": "Capacity planner", "validation": "Validation",
          "paper": "Paper"}
PREFILL = Workload(batch="max", prompt_tokens=2048, generated_tokens=128)
NEOX_CONFIG = {"model_type": "gpt_neox", "num_hidden_layers": 6, "hidden_size": 512,
               "num_attention_heads": 8, "intermediate_size": 2048, "vocab_size": 50304}


@pytest.fixture(autouse=True)
def _clear_streamlit_caches():
    """st caches live for the whole pytest process: start every test from empty ones."""
    st.cache_data.clear()
    st.cache_resource.clear()
    yield


@pytest.fixture(autouse=True)
def _no_validation_data(tmp_path, monkeypatch):
    """The Validation page reads an empty folder unless a test writes datasets there."""
    folder = tmp_path / "results"
    folder.mkdir()
    monkeypatch.setenv(RESULTS_ENV, str(folder))
    return folder


def run_app(page: str = "compare", query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    if query:
        at.query_params.update(query)
    at.run()
    if page != "compare":
        at.switch_page(f"app_pages/{page}.py").run()
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def chart_spec(at: AppTest, index: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def expected_cards(label: str, est) -> dict[str, str]:
    return {f"{label} Throughput": fmt.tokens_per_s(est.throughput_tokens_per_s),
            f"{label} TTFT": fmt.seconds(est.ttft_s), f"{label} TPOT": fmt.seconds(est.tpot_s),
            f"{label} Memory / sample": fmt.bytes_(est.memory_bytes_per_sample),
            f"{label} Max batch": fmt.count(est.max_batch)}


# --- every page ---------------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_error(page):
    at = run_app(page)
    assert_clean(at)
    assert errors(at) == []
    assert at.title[0].value == TITLES[page]
    assert at.sidebar.selectbox(key="hardware").value == "h100-sxm-80gb"


# --- Compare ------------------------------------------------------------------------------------

def test_compare_defaults_equal_the_api():
    at = run_app()
    v = estimate("vanilla_410", "h100-sxm-80gb", PREFILL)
    b = estimate("block_main_b4_1.2b", "h100-sxm-80gb", PREFILL)
    shown = metrics(at)
    assert expected_cards("Vanilla", v).items() <= shown.items()
    assert expected_cards("Block", b).items() <= shown.items()
    assert shown["Throughput ratio"] == fmt.ratio(b.throughput_tokens_per_s
                                                  / v.throughput_tokens_per_s)
    table = at.dataframe[0].value.set_index("metric")  # human units, as the cards
    assert table.loc["Throughput", "Vanilla"] == fmt.tokens_per_s(v.throughput_tokens_per_s)
    assert table.loc["TPOT", "Block"] == fmt.seconds(b.tpot_s)
    assert table.loc["Max batch", "block / vanilla"] == fmt.ratio(b.max_batch / v.max_batch)
    assert table.loc["FLOPs (request)", "Vanilla"] == fmt.flops(v.flops_total)
    assert len(at.get("plotly_chart")) == 3  # phases, vanilla ops, block ops


def test_compare_explains_itself():
    """What a Block Transformer is, why this pair, which ratio is good, per-token decode."""
    at = run_app()
    v = estimate("vanilla_410", "h100-sxm-80gb", PREFILL)
    b = estimate("block_main_b4_1.2b", "h100-sxm-80gb", PREFILL)
    text = " ".join(m.value for m in at.markdown)
    assert "block decoder" in text and "token decoder" in text and "P + L_B − 1" in text
    assert "similar training loss" in text and "(loss 2.224)" in text and "(loss 2.188)" in text
    cards = {m.label: m for m in at.metric}
    ttft, tpot = cards["TTFT ratio"], cards["TPOT ratio"]
    r_ttft, r_tpot = b.ttft_s / v.ttft_s, b.tpot_s / v.tpot_s
    assert 1 < r_ttft < 2 and r_tpot < 1  # block: slower first token, faster decoding
    assert ttft.value == fmt.ratio(r_ttft)
    from streamlit.proto.Metric_pb2 import Metric

    worse = f"worse: {(r_ttft - 1) * 100:.0f}% higher"
    assert ttft.delta == worse and ttft.proto.color == Metric.MetricColor.RED
    assert tpot.value == fmt.ratio(r_tpot)
    assert tpot.delta == f"better: {(1 - r_tpot) * 100:.0f}% lower"
    assert tpot.proto.color == Metric.MetricColor.GREEN
    # decode per token: one vanilla token against a quarter of a four-token block step
    per_token = cards["Block Decode time per token"].value
    assert per_token == fmt.seconds(b.decode_step_time_s / 4) == fmt.seconds(
        b.decode_time_per_token_s)
    assert cards["Vanilla Decode time per token"].value == fmt.seconds(v.decode_step_time_s)
    table = at.dataframe[0].value.set_index("metric")
    assert table.loc["TTFT", "for the block model"] == worse
    # the two per-op charts share one x scale, wide enough for the longest op of both
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")[1:]]
    ranges = [s["layout"]["xaxis"]["range"] for s in specs]
    longest = max(v.breakdown()["time_s"].max(), b.breakdown()["time_s"].max()) * 1e3
    assert ranges[0] == ranges[1] and ranges[0][1] >= longest


def test_compare_follows_every_sidebar_input():
    at = run_app()
    sb = at.sidebar
    sb.selectbox(key="vanilla").set_value("vanilla_160")
    sb.selectbox(key="block").set_value("block_main_b4_300")
    sb.selectbox(key="hardware").set_value("a100-sxm-80gb")
    sb.radio(key="profile").set_value("hf-legacy")
    sb.radio(key="batch_mode").set_value("fixed")
    at.run()
    sb = at.sidebar  # the fixed-batch input exists only after that run
    sb.number_input(key="batch").set_value(8)
    sb.number_input(key="prompt_tokens").set_value(512)
    sb.number_input(key="generated_tokens").set_value(256)
    at.run()
    assert_clean(at)
    wl = Workload(batch=8, prompt_tokens=512, generated_tokens=256)
    v = estimate("vanilla_160", "a100-sxm-80gb", wl, "hf-legacy")
    b = estimate("block_main_b4_300", "a100-sxm-80gb", wl, "hf-legacy")
    shown = metrics(at)
    assert expected_cards("Vanilla", v).items() <= shown.items()
    assert expected_cards("Block", b).items() <= shown.items()
    # ... and the URL mirrors the what-if
    assert at.query_params == {"vanilla": "vanilla_160", "block": "block_main_b4_300",
                               "hw": "a100-sxm-80gb", "profile": "hf-legacy", "prompt": "512",
                               "gen": "256", "batch": "8"}


def test_url_query_parameters_seed_the_what_if():
    at = run_app(query={"vanilla": "Vanilla 70M", "hw": "h200-sxm-141gb", "batch": "16",
                        "gen": "512", "reserve_gib": "2"})
    assert_clean(at)
    assert at.sidebar.selectbox(key="vanilla").value == "vanilla_70"
    assert at.sidebar.number_input(key="batch").value == 16
    wl = Workload(batch=16, prompt_tokens=2048, generated_tokens=512,
                  memory_reserve_bytes=2 * 2**30)
    v = estimate("vanilla_70", "h200-sxm-141gb", wl)
    assert expected_cards("Vanilla", v).items() <= metrics(at).items()


def test_bad_url_parameter_warns_and_falls_back():
    at = run_app(query={"hw": "no-such-gpu", "prompt": "lots"})
    assert_clean(at)
    warnings = [w.value for w in at.warning]
    assert any("hw='no-such-gpu'" in w for w in warnings)
    assert any("prompt='lots'" in w and "whole number" in w for w in warnings)
    assert at.sidebar.selectbox(key="hardware").value == "h100-sxm-80gb"


# --- bad input: st.error naming the field and the rule, the rest usable ---------------------------

def test_zero_prompt_is_an_error_not_a_traceback():
    at = run_app()
    at.sidebar.number_input(key="prompt_tokens").set_value(0).run()
    assert_clean(at)
    error = "Workload — prompt_tokens: Input should be greater than 0 (got 0)"
    assert errors(at) == [error]
    for page in PAGES[1:]:  # every page names the problem and stays usable
        at.switch_page(f"app_pages/{page}.py").run()
        assert_clean(at)
        assert error in errors(at)
        assert at.title[0].value == TITLES[page]
    # back to a valid value: numbers return
    at.switch_page("app_pages/compare.py")
    at.sidebar.number_input(key="prompt_tokens").set_value(128).run()
    assert errors(at) == [] and "Vanilla Throughput" in metrics(at)


def test_zero_batch_is_an_error():
    at = run_app()
    at.sidebar.radio(key="batch_mode").set_value("fixed").run()
    at.sidebar.number_input(key="batch").set_value(0).run()
    assert_clean(at)
    assert errors(at) == ["Workload — batch: Input should be greater than 0 (got 0)"]


def test_custom_vanilla_with_indivisible_width_keeps_block_side_working():
    at = run_app()
    at.sidebar.selectbox(key="vanilla").set_value("custom").run()
    at.sidebar.number_input(key="v_width").set_value(1000).run()
    assert_clean(at)
    [msg] = errors(at)
    assert msg.startswith("Custom vanilla model — stack: ")
    assert "d_model (1000) must be divisible by n_heads (16)" in msg
    b = estimate("block_main_b4_1.2b", "h100-sxm-80gb", PREFILL)
    shown = metrics(at)
    assert expected_cards("Block", b).items() <= shown.items()
    assert not any(k.startswith("Vanilla") for k in shown)


def test_custom_models_match_the_api():
    at = run_app()
    sb = at.sidebar
    sb.selectbox(key="vanilla").set_value("custom")
    sb.selectbox(key="block").set_value("custom")
    at.run()
    sb = at.sidebar  # the custom fields exist only after that run
    sb.number_input(key="v_layers").set_value(12)
    sb.number_input(key="v_width").set_value(768)
    sb.number_input(key="v_heads").set_value(12)
    sb.number_input(key="v_ffn").set_value(3072)
    sb.number_input(key="b_block_length").set_value(8)
    sb.number_input(key="b_layers_token").set_value(6)
    at.run()
    assert_clean(at)
    from costmodel.spec import BlockSpec, StackSpec, VanillaSpec

    van = VanillaSpec(name="custom-vanilla", stack=StackSpec(n_layers=12, d_model=768,
                                                             n_heads=12, d_ffn=3072))
    stack = StackSpec(n_layers=12, d_model=2048, n_heads=16, d_ffn=8192)
    blk = BlockSpec(name="custom-block", block_length=8, prefix_length=2, block_decoder=stack,
                    token_decoder=stack.model_copy(update={"n_layers": 6}))
    shown = metrics(at)
    assert expected_cards("Vanilla", estimate(van, "h100-sxm-80gb", PREFILL)).items() \
        <= shown.items()
    assert expected_cards("Block", estimate(blk, "h100-sxm-80gb", PREFILL)).items() \
        <= shown.items()
    assert at.query_params["b_lb"] in ("8", ["8"])


def test_blockify_with_indivisible_block_length_is_an_error():
    at = run_app()
    at.sidebar.selectbox(key="block").set_value("blockify").run()
    at.sidebar.number_input(key="bf_block_length").set_value(3).run()
    assert_clean(at)
    [msg] = errors(at)
    assert "block_decoder.d_model (1024) must be divisible by block_length (3)" in msg


def test_uploaded_config_json_good_and_bad():
    at = run_app()
    at.sidebar.selectbox(key="vanilla").set_value("upload").run()
    assert_clean(at)
    assert any("upload a Hugging Face config.json" in i.value for i in at.info)

    at.sidebar.file_uploader(key="vanilla_upload").upload("config.json", b"{not json").run()
    assert_clean(at)
    [msg] = errors(at)
    assert msg.startswith("Uploaded config.json — file: not valid JSON")

    bad = NEOX_CONFIG | {"hidden_size": 500}
    at.sidebar.file_uploader(key="vanilla_upload").upload(
        "config.json", json.dumps(bad).encode()).run()
    [msg] = errors(at)
    assert "hidden_size (500) must be divisible by num_attention_heads (8)" in msg

    missing = {k: v for k, v in NEOX_CONFIG.items() if k != "hidden_size"}
    at.sidebar.file_uploader(key="vanilla_upload").upload(
        "config.json", json.dumps(missing).encode()).run()
    [msg] = errors(at)
    assert msg == "Uploaded config.json — hidden_size: missing required key 'hidden_size'"

    at.sidebar.file_uploader(key="vanilla_upload").upload(
        "config.json", json.dumps(NEOX_CONFIG).encode()).run()
    assert_clean(at)
    assert errors(at) == []
    spec = spec_from_hf_config(NEOX_CONFIG)
    assert expected_cards("Vanilla", estimate(spec, "h100-sxm-80gb", PREFILL)).items() \
        <= metrics(at).items()


def test_hardware_without_the_profiles_dtype_is_an_error():
    at = run_app()
    at.sidebar.selectbox(key="hardware").set_value("v100-sxm2-32gb").run()
    assert_clean(at)
    msgs = errors(at)
    assert len(msgs) == 2 and all("has no bf16 rate; it has fp32, fp16" in m for m in msgs)
    for page in PAGES[1:]:
        at.switch_page(f"app_pages/{page}.py").run()
        assert_clean(at)


def test_precision_in_the_sidebar_and_the_url():
    """Vanilla with an fp8 KV cache vs a bf16 Block Transformer (docs/precision.md); a device
    without bf16 runs once the compute dtype is one it has."""
    at = run_app(query={"kvdtype": "kv-fp8", "dtype_on": "vanilla"})
    assert_clean(at)
    assert at.sidebar.selectbox(key="kv_dtype").value == "kv-fp8"
    from costmodel import get_implementation

    v = estimate("vanilla_410", "h100-sxm-80gb", PREFILL,
                 get_implementation("static", kv_dtype="fp8"))
    b = estimate("block_main_b4_1.2b", "h100-sxm-80gb", PREFILL)
    shown = metrics(at)
    assert expected_cards("Vanilla", v).items() <= shown.items()
    assert expected_cards("Block", b).items() <= shown.items()
    assert v.max_batch > estimate("vanilla_410", "h100-sxm-80gb", PREFILL).max_batch
    assert any("KV fp8" in c.value for c in at.caption)
    sb = at.sidebar
    sb.selectbox(key="weight_dtype").set_value("int4-g128")
    sb.selectbox(key="hardware").set_value("v100-sxm2-32gb")
    sb.selectbox(key="compute_dtype").set_value("fp16")
    sb.radio(key="dtype_scope").set_value("both")
    at.run()
    assert_clean(at)
    assert errors(at) == []
    impl = get_implementation("static", weight_dtype="int4-g128", kv_dtype="fp8",
                              compute_dtype="fp16")
    b = estimate("block_main_b4_1.2b", "v100-sxm2-32gb", PREFILL, impl)
    assert expected_cards("Block", b).items() <= metrics(at).items()
    assert {"wdtype": "int4-g128", "kvdtype": "kv-fp8", "cdtype": "fp16"}.items() \
        <= at.query_params.items()
    assert "dtype_on" not in at.query_params
    bad = run_app(query={"wdtype": "int3"})
    assert any("wdtype='int3'" in w.value and "unknown format" in w.value for w in bad.warning)


# --- Design space -------------------------------------------------------------------------------

def test_design_space_sweep_values_equal_the_api():
    at = run_app("design_space")
    at.selectbox(key="ds_axis").set_value("prompt_tokens").run()
    at.selectbox(key="ds_metric").set_value("tpot_s").run()
    assert_clean(at)
    spec = chart_spec(at, 0)
    lines = {t["name"]: t for t in spec["data"]}
    df = sweep(["vanilla_410", "block_main_b4_1.2b"], "h100-sxm-80gb", batch="max",
               prompt_tokens=[2**k for k in range(7, 16)], generated_tokens=128,
               metrics=["tpot_s"])
    for side, name in (("Vanilla", "vanilla_410"), ("Block", "block_main_b4_1.2b")):
        expect = df[df["model"] == name].sort_values("prompt_tokens")
        assert lines[side]["x"] == expect["prompt_tokens"].tolist()
        assert lines[side]["y"] == pytest.approx(expect["tpot_s"].tolist(), rel=1e-12)


@pytest.mark.parametrize("axis", ["block_length", "batch", "generated_tokens", "hardware"])
def test_design_space_axes_render(axis):
    at = run_app("design_space")
    at.selectbox(key="ds_axis").set_value(axis).run()
    assert_clean(at)
    assert errors(at) == []
    assert len(at.get("plotly_chart")) == 3


def test_design_space_pareto_table_equals_sweep():
    at = run_app("design_space")
    table = at.dataframe[0].value.set_index("preset")
    est = estimate("block_main_b4_5", "h100-sxm-80gb", PREFILL)
    assert table.loc["block_main_b4_5", "throughput_tokens_per_s"] == pytest.approx(
        est.throughput_tokens_per_s, rel=1e-12)
    assert bool(table.loc["block_main_b4_5", "pareto"])


# --- Roofline -----------------------------------------------------------------------------------

def test_roofline_follows_hardware_and_phase():
    at = run_app("roofline")
    hw = get_hardware("h100-sxm-80gb")
    assert metrics(at)["Ridge point"] == f"{hw.ridge_point('bf16'):,.1f} FLOP/byte"
    at.sidebar.selectbox(key="hardware").set_value("a100-sxm-80gb").run()
    a100 = get_hardware("a100-sxm-80gb")
    assert metrics(at)["Ridge point"] == f"{a100.ridge_point('bf16'):,.1f} FLOP/byte"
    at.selectbox(key="rf_phase").set_value("prefill").run()
    assert_clean(at)
    spec = chart_spec(at)
    v = estimate("vanilla_410", "a100-sxm-80gb", PREFILL)
    b = estimate("block_main_b4_1.2b", "a100-sxm-80gb", PREFILL)
    n_ops = sum(1 for e in (v, b) for r in e.ops if r.phase == "prefill" and r.t_math_s > 0)
    placed = sum(len(t["x"]) for t in spec["data"][3:])
    assert placed == n_ops
    assert "(prefill)" in spec["layout"]["title"]["text"]


# --- Formulas -----------------------------------------------------------------------------------

def test_formulas_metric_value_and_relative_cost_table():
    at = run_app("formulas")
    assert_clean(at)
    est = estimate("vanilla_410", "h100-sxm-80gb", PREFILL)
    assert metrics(at)["Value of kv_cache_bytes_per_sample"] == fmt.bytes_(
        est.kv_cache_bytes_per_sample)
    assert at.latex[0].value.strip("$\n") == formula("kv_cache_bytes_per_sample",
                                                      "vanilla_410").latex
    legend = at.dataframe[0].value.set_index("symbol")
    assert legend.loc["N", "value"] == 24 and legend.loc["S", "value"] == 2048
    table = next(m.value for m in at.markdown if "Linear projections" in m.value)
    assert r"\frac{1}{L_{B}^{2}}" in table  # block decoder: KV IO and attention / L_B^2


def test_formulas_row_term_equals_formula_evaluate():
    at = run_app("formulas")
    at.radio(key="fx_side").set_value("Block")
    at.radio(key="fx_kind").set_value("One op of one phase").run()
    at.selectbox(key="fx_phase").set_value("block_decoder.step").run()
    at.selectbox(key="fx_op").set_value("block_decoder.layers.attn.core").run()
    at.selectbox(key="fx_quantity").set_value("kv_read_bytes").run()
    assert_clean(at)
    name = "block_decoder.step/block_decoder.layers.attn.core/kv_read_bytes"
    est = estimate("block_main_b4_1.2b", "h100-sxm-80gb", PREFILL)
    wl = PREFILL.model_copy(update={"batch": est.batch})
    value = formula(name, "block_main_b4_1.2b").evaluate("block_main_b4_1.2b", "h100-sxm-80gb",
                                                         wl)
    assert metrics(at)[f"Value of {name}"] == fmt.bytes_(value)


# --- Capacity planner ---------------------------------------------------------------------------

def test_capacity_plan_equals_the_api():
    at = run_app("capacity")
    plan = plan_capacity("vanilla_410", "h100-sxm-80gb", PREFILL, target_tokens_per_s=1e6)
    shown = metrics(at)
    assert shown["Batch per replica"] == fmt.count(plan.batch)
    assert shown["GPUs (replicas)"] == fmt.count(plan.gpus)
    assert shown["Throughput per replica"] == fmt.tokens_per_s(
        plan.throughput_tokens_per_s_per_replica)

    at.radio(key="cap_side").set_value("Block")
    at.radio(key="cap_mode").set_value("both").run()  # enables the TPOT bound
    at.number_input(key="cap_tpot_ms").set_value(5.0)
    at.number_input(key="cap_price").set_value(2.0)
    at.run()
    assert_clean(at)
    plan = plan_capacity("block_main_b4_1.2b", "h100-sxm-80gb", PREFILL, target_tokens_per_s=1e6,
                         tpot_bound_s=5e-3, price_per_gpu_hour=2.0)
    shown = metrics(at)
    assert shown["Batch per replica"] == fmt.count(plan.batch)
    assert shown["GPUs (replicas)"] == fmt.count(plan.gpus)
    assert shown["Cost per million generated tokens"] == fmt.money(plan.cost_per_million_tokens)
    assert shown["Compute-bound batch"] == fmt.count(plan.compute_bound_batch)


@pytest.mark.parametrize(("key", "value", "field"), [
    ("cap_target", 0.0, "target_tokens_per_s"),
    ("cap_tpot_ms", 1e-6, "tpot_bound_s"),
    ("cap_price", -1.0, "price_per_gpu_hour"),
])
def test_capacity_bad_input_names_the_field(key, value, field):
    at = run_app("capacity")
    at.radio(key="cap_mode").set_value("both").run()
    at.number_input(key=key).set_value(value)
    at.run()
    assert_clean(at)
    [msg] = errors(at)
    assert msg.startswith(f"Capacity planner — {field}:")


def test_efficiency_overrides_change_the_estimates():
    at = run_app("compare")
    assert_clean(at)
    assert "Efficiencies (the record's)" in [e.label for e in at.expander]
    at.number_input(key="eff_overlap").set_value(0.0).run()
    assert_clean(at)
    assert "Efficiencies (1 overridden)" in [e.label for e in at.expander]
    hw = get_hardware("h100-sxm-80gb").with_efficiency(overlap=0.0)
    est = estimate("vanilla_410", hw, Workload(batch="max", prompt_tokens=2048,
                                               generated_tokens=128))
    assert metrics(at)["Vanilla TTFT"] == fmt.seconds(est.ttft_s)
    assert at.query_params["eff_ov"] in ("0", ["0"])
    at.number_input(key="eff_matmul").set_value(0.0).run()
    assert any("efficiency.matmul: Input should be greater than 0" in e.value for e in at.error)


# --- Validation ---------------------------------------------------------------------------------

def test_validation_empty_state():
    at = run_app("validation")
    assert_clean(at)
    assert [i.value for i in at.info] == [
        "No validation datasets yet: run `blockroof validate run ...`"]


def test_validation_dataset_mape(_no_validation_data):
    rows = [
        {"model": "vanilla_31", "phase": "prefill", "device": "cpu", "predicted_s": 1.0,
         "measured_s": 2.0, "flops": 1e9, "bytes": 1e8},
        {"model": "vanilla_31", "phase": "decode", "device": "cpu", "predicted_s": 3.0,
         "measured_s": 2.0},
        {"model": "block_main_b4_5", "phase": "decode", "device": "h100-sxm-80gb",
         "predicted_s": 0.9, "measured_s": 1.0},
    ]
    text = "\n".join(json.dumps(r) for r in rows) + "\n{broken\n" + json.dumps({"model": "x"})
    (_no_validation_data / "run1.jsonl").write_text(text)
    at = run_app("validation")
    assert_clean(at)
    mape = (50 + 50 + 10) / 3
    assert metrics(at)["MAPE (all selected points)"] == f"{mape:.1f} %"
    table = at.dataframe[0].value.set_index(["phase", "device"])
    assert table.loc[("decode", "cpu"), "mape_pct"] == pytest.approx(50)
    assert table.loc[("decode", "h100-sxm-80gb"), "mape_pct"] == pytest.approx(10)
    assert any("2 line(s) skipped" in e.label for e in at.expander)
    at.multiselect(key="val_devices").set_value(["cpu"]).run()
    assert metrics(at)["MAPE (all selected points)"] == "50.0 %"


def test_validation_calibrated_view_uses_the_report(_no_validation_data):
    run = _no_validation_data / "cpu"
    run.mkdir()
    recs = [{"point_id": f"p{i}", "model": "vanilla_31", "phase": "decode_step",
             "device": "cpu", "predicted_s": 1.0, "measured_s": 2.0} for i in range(4)]
    (run / "dataset.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    (run / "points.csv").write_text(
        "point_id,predicted_s,predicted_calibrated_s,split\n"
        "p0,1.0,2.2,test\np1,1.0,2.4,test\np2,1.0,2.0,train\np3,1.0,2.0,train\n")
    at = run_app("validation")
    assert_clean(at)
    assert at.radio(key="val_prediction").value.startswith("calibrated")
    assert metrics(at)["MAPE (held-out points)"] == "15.0 %"  # (10 + 20) / 2
    at.checkbox(key="val_held_out").uncheck().run()
    assert metrics(at)["MAPE (all selected points)"] == "7.5 %"
    at.radio(key="val_prediction").set_value("uncalibrated roofline").run()
    assert metrics(at)["MAPE (all selected points)"] == "50.0 %"


def test_validation_op_profile_section(_no_validation_data):
    (_no_validation_data / "run.jsonl").write_text(json.dumps(
        {"model": "vanilla_31", "phase": "decode", "device": "cpu", "predicted_s": 1.0,
         "measured_s": 2.0}))
    at = run_app("validation")
    assert any("No per-op profiles yet" in c.value for c in at.caption)
    ops = _no_validation_data / "cpu" / "ops"
    ops.mkdir(parents=True)
    for name, batch in (("a", 1), ("b", 8)):
        (ops / f"{name}.json").write_text(json.dumps(
            {"model": "vanilla_70", "phase": "decode_step", "batch": batch, "context": 128,
             "hardware": "cpu-x", "ops": [
                 {"op": "lm_head", "measured_s": 0.02 * batch, "predicted_s": 0.01}]}))
    at = run_app("validation")
    assert_clean(at)
    table = at.dataframe[-2].value
    assert table["op"].tolist() == ["lm_head"] and table["ratio"].iloc[0] == pytest.approx(0.5)
    at.selectbox(key="val_op_profile").set_value("cpu/ops/b.json").run()
    assert at.dataframe[-2].value["ratio"].iloc[0] == pytest.approx(0.01 / 0.16)


# --- Paper --------------------------------------------------------------------------------------

def test_paper_tables_equal_the_api():
    at = run_app("paper")
    assert_clean(at)
    expected = paper_table("h100-sxm-80gb")
    shown = at.dataframe[0].value
    part = expected[expected["setting"] == "prefill-heavy"]
    assert shown["static_throughput_tok_s"].tolist() == pytest.approx(
        part["static_throughput_tok_s"].tolist(), rel=1e-12)
    at.radio(key="paper_setting").set_value("decode-heavy").run()
    shown = at.dataframe[0].value
    part = expected[expected["setting"] == "decode-heavy"]
    assert shown["paper_throughput_tok_s"].tolist() == part["paper_throughput_tok_s"].tolist()
    assert shown["hf-legacy_throughput_tok_s"].tolist() == pytest.approx(
        part["hf-legacy_throughput_tok_s"].tolist(), rel=1e-12)
    agreement = at.dataframe[1].value  # Spearman and MAPE per prediction column
    assert agreement["prediction"].tolist()[:4] == ["static", "hf-legacy", "official",
                                                     "official-eager"]
    assert (agreement["Spearman (rank agreement)"] > 0.9).all()
    pairs = at.dataframe[2].value
    assert set(pairs["setting"]) == {"decode-heavy"} and len(pairs) == 5
    assert math.isclose(pairs.iloc[0]["paper_ratio"], 25.7 / 2.1)


# --- Serving ------------------------------------------------------------------------------------

def test_serving_max_rates_and_curves_equal_the_simulator():
    from serving import SLO, SchedulerConfig, max_rate

    at = run_app("serving")
    at.number_input(key="srv_requests").set_value(100).run()
    assert_clean(at)
    assert errors(at) == []
    assert at.title[0].value == "Serving"
    slo = SLO(ttft_s=1.0, tpot_s=0.05, percentile=95)
    shown = metrics(at)
    for label, model in (("Vanilla", "vanilla_410"), ("Block", "block_main_b4_1.2b")):
        res = max_rate(model, "h100-sxm-80gb", 2048, 128, slo, requests=100,
                       scheduler=SchedulerConfig())
        assert res.met
        assert shown[f"{label} max rate per replica"] == f"{res.max_rate_per_s:.3g} req/s"
    spec = chart_spec(at)
    names = {t.get("name") for t in spec["data"]}
    assert {"Vanilla", "Block"} <= names
    # SLO lines at 1 s (TTFT panel) and 50 ms (TPOT panel)
    ys = sorted(s["y0"] for s in spec["layout"]["shapes"] if s.get("y0") == s.get("y1"))
    assert ys == [1.0, 50.0]


def test_serving_bad_slo_is_an_error_naming_the_field():
    at = run_app("serving")
    at.number_input(key="srv_pct").set_value(0.0).run()
    assert_clean(at)
    [msg] = errors(at)
    assert msg.startswith("Serving — percentile:")
