"""The dashboard's pure helpers (no Streamlit run): URL state, input resolution, sweeps,
figures, the derived relative-cost table, the validation loader, formatting."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("plotly")

from app import design, figures, fmt, formula_view, relative_costs, tables  # noqa: E402
from app import validation_data as vd  # noqa: E402
from app.resolve import parse_config_upload, resolve  # noqa: E402
from app.state import (  # noqa: E402
    BLOCK_CHOICES,
    COMPUTE_DTYPE_CHOICES,
    DEFAULT,
    DTYPE_SCOPES,
    KV_DTYPE_CHOICES,
    PROFILE_CHOICES,
    QUERY_FIELD,
    RULES,
    VANILLA_CHOICES,
    WEIGHT_DTYPE_CHOICES,
    WhatIf,
    check_value,
    from_query_params,
    to_query_params,
)
from costmodel import Workload, estimate, get_hardware, get_preset, sweep  # noqa: E402
from costmodel import symbols as sy  # noqa: E402
from costmodel.hardware import hardware_ids  # noqa: E402
from costmodel.hf_config import spec_from_hf_config  # noqa: E402

PREFILL = Workload(batch="max", prompt_tokens=2048, generated_tokens=128)


# --- URL state ----------------------------------------------------------------------------------

_sizes = st.integers(0, 9000)
_eff = st.none() | st.sampled_from((0.0, 0.35, 0.8, 1.0, 1.5))
_us = st.none() | st.sampled_from((0.0, 12.5, 3000.0))
WHATIF_FIELDS = dict(
    vanilla=st.sampled_from(VANILLA_CHOICES), block=st.sampled_from(BLOCK_CHOICES),
    hardware=st.sampled_from(hardware_ids()), profile=st.sampled_from(PROFILE_CHOICES),
    batch_mode=st.sampled_from(("max", "fixed")), batch=st.integers(0, 10**6),
    prompt_tokens=st.integers(-5, 10**6), generated_tokens=st.integers(0, 10**6),
    reserve_GiB=st.sampled_from((0.0, 0.5, 2.0, 10.0)),
    v_layers=st.integers(0, 200), v_width=_sizes, v_heads=st.integers(0, 128), v_ffn=_sizes,
    b_block_length=st.integers(0, 64), b_prefix=st.integers(0, 16),
    b_layers_block=st.integers(0, 200), b_layers_token=st.integers(0, 200), b_width=_sizes,
    b_heads=st.integers(0, 128), b_ffn=_sizes, bf_block_length=st.integers(0, 64),
    weight_dtype=st.sampled_from(WEIGHT_DTYPE_CHOICES), kv_dtype=st.sampled_from(KV_DTYPE_CHOICES),
    compute_dtype=st.sampled_from(COMPUTE_DTYPE_CHOICES), dtype_scope=st.sampled_from(DTYPE_SCOPES),
    eff_matmul=_eff, eff_bandwidth=_eff, eff_overlap=_eff, kernel_overhead_us=_us,
    forward_overhead_us=_us, tp=st.integers(1, 8), pp=st.integers(1, 4),
)
whatifs = st.builds(WhatIf, **WHATIF_FIELDS)

# what the URL carries (app/state.py `to_query_params`): the main choices always, the batch
# when fixed, the reserve when set, a custom model's fields only when it is chosen, efficiencies
# when set, tp and pp when not 1; everything else comes back as the default
MAIN = ("vanilla", "block", "hardware", "profile", "prompt_tokens", "generated_tokens",
        "batch_mode")
CUSTOM_VANILLA = ("v_layers", "v_width", "v_heads", "v_ffn")
CUSTOM_BLOCK = ("b_block_length", "b_prefix", "b_layers_block", "b_layers_token", "b_width",
                "b_heads", "b_ffn")
EFFICIENCIES = ("eff_matmul", "eff_bandwidth", "eff_overlap", "kernel_overhead_us",
                "forward_overhead_us")


def test_strategy_draws_every_field():
    from dataclasses import fields

    assert set(WHATIF_FIELDS) == {f.name for f in fields(WhatIf)}


@settings(max_examples=200, deadline=None)
@given(whatifs)
def test_query_params_round_trip(w):
    """Values within the models' rules come back exactly; a value outside them is refused
    with a warning quoting it, before any widget sees it (docs/reliability.md)."""
    url = to_query_params(w)
    back, warnings = from_query_params(url)
    refused = set()
    for key, text in url.items():
        field = QUERY_FIELD.get(key)
        try:
            if field in RULES and text != "max":
                check_value(field, float(text), text)
        except ValueError:
            refused.add(key)
            assert any(w.startswith(f"URL parameter {key}={text!r} was ignored") for w in warnings)
    assert len(warnings) == len(refused)
    # the fields the URL carries come back exactly, unless refused
    for key, name in QUERY_FIELD.items():
        if key in url and key not in refused and key != "batch":
            assert getattr(back, name) == getattr(w, name), name
    if not refused:
        assert to_query_params(back) == url


def test_query_params_accept_display_names_and_case():
    w, warnings = from_query_params({"vanilla": "Vanilla 160M", "block": "BLOCK 1.0B",
                                     "hw": "A100-SXM-80GB", "batch": "MAX"})
    assert warnings == []
    assert (w.vanilla, w.block, w.hardware, w.batch_mode) == (
        "vanilla_160", "block_main_b4_800", "a100-sxm-80gb", "max")


def test_query_params_reject_with_a_reason():
    w, warnings = from_query_params({"block": "vanilla_31", "profile": "fast", "zzz": "1",
                                     "gen": "1.5"})
    assert w == DEFAULT
    assert len(warnings) == 4
    assert any("'vanilla_31' is not a block model" in x for x in warnings)
    assert any("profile='fast'" in x and "known: static, hf-legacy" in x for x in warnings)
    assert any("'zzz' is unknown" in x for x in warnings)
    assert any("gen='1.5'" in x for x in warnings)


# --- input resolution ---------------------------------------------------------------------------

def test_default_resolves_to_the_presets():
    ctx = resolve(DEFAULT)
    assert ctx.errors == ()
    assert ctx.vanilla == get_preset("vanilla_410")
    assert ctx.block == get_preset("block_main_b4_1.2b")
    assert ctx.workload == PREFILL
    assert ctx.hardware.id == "h100-sxm-80gb"


@pytest.mark.parametrize(("changes", "expected"), [
    ({"prompt_tokens": 0}, "Workload — prompt_tokens: Input should be greater than 0 (got 0)"),
    ({"generated_tokens": -3},
     "Workload — generated_tokens: Input should be greater than 0 (got -3)"),
    ({"batch_mode": "fixed", "batch": 0},
     "Workload — batch: Input should be greater than 0 (got 0)"),
    ({"reserve_GiB": -1.0},
     "Workload — memory_reserve_bytes: Input should be greater than or equal to 0 "
     "(got -1073741824.0)"),
    ({"vanilla": "custom", "v_heads": 0},
     "Custom vanilla model — stack.n_heads: Input should be greater than 0 (got 0)"),
    ({"block": "custom", "b_block_length": 3},
     "Custom block model — (model): block_decoder.d_model (2048) must be divisible by "
     "block_length (3): the embedder concatenates block_length embeddings of width "
     "d_model / block_length"),
    ({"hardware": "tpu-v9"}, "Hardware — hardware: unknown id 'tpu-v9'"),
    ({"eff_matmul": 0.0},
     "Hardware efficiency — efficiency.matmul: Input should be greater than 0 (got 0.0)"),
    ({"eff_overlap": 1.5},
     "Hardware efficiency — efficiency.overlap: Input should be less than or equal to 1 "
     "(got 1.5)"),
])
def test_bad_inputs_name_the_field_and_rule(changes, expected):
    ctx = resolve(replace(DEFAULT, **changes))
    texts = [e.text() for e in ctx.errors]
    assert any(t.startswith(expected) for t in texts), texts


def test_efficiency_overrides_apply_to_the_record():
    assert resolve(DEFAULT).hardware == get_hardware("h100-sxm-80gb")  # nothing overridden
    w = replace(DEFAULT, eff_matmul=0.8, eff_overlap=0.0, kernel_overhead_us=5.0)
    eff = resolve(w).hardware.efficiency
    assert (eff.matmul, eff.bandwidth, eff.overlap) == (0.8, 1.0, 0.0)
    assert eff.kernel_overhead_s == pytest.approx(5e-6) and eff.forward_overhead_s == 0.0
    url = to_query_params(w)
    assert (url["eff_mm"], url["eff_ov"], url["t_kernel_us"]) == ("0.8", "0", "5")
    assert "eff_bw" not in url and "t_forward_us" not in to_query_params(DEFAULT)
    back, warnings = from_query_params(url | {"eff_bw": "fast"})
    assert back == w and warnings == ["URL parameter eff_bw='fast' was ignored: expected a "
                                      "number, got 'fast'"]


def test_one_bad_side_leaves_the_other():
    ctx = resolve(replace(DEFAULT, vanilla="custom", v_width=1000))
    assert ctx.vanilla is None and ctx.block is not None
    assert list(ctx.models()) == ["Block"]
    blockified = resolve(replace(DEFAULT, vanilla="custom", v_width=1000, block="blockify"))
    assert blockified.block is None
    assert any(e.field == "blockify" for e in blockified.errors)


def test_config_upload_parsing():
    cfg = {"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 512,
           "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 1376,
           "vocab_size": 32000}
    spec = parse_config_upload(json.dumps(cfg).encode(), "tiny-llama.json")
    assert spec == spec_from_hf_config(cfg, name="tiny-llama")
    with pytest.raises(ValueError, match=r"^config.json: not valid JSON"):
        parse_config_upload(b"[1,", "config.json")
    with pytest.raises(ValueError, match=r"^config.json: the file is not UTF-8"):
        parse_config_upload(b"\xff\xfe\x00", "config.json")
    with pytest.raises(ValueError, match=r"model_type 'bert' is not supported"):
        parse_config_upload(b'{"model_type": "bert"}', "config.json")


# --- tables and formatting ----------------------------------------------------------------------

def test_compare_table_and_downloads():
    v = estimate("vanilla_410", "h100-sxm-80gb", PREFILL)
    b = estimate("block_main_b4_1.2b", "h100-sxm-80gb", PREFILL)
    table = tables.compare_table({"Vanilla": v, "Block": b}).set_index("metric")
    assert table.loc["Throughput", tables.RATIO_COLUMN] == pytest.approx(
        b.throughput_tokens_per_s / v.throughput_tokens_per_s)
    data = json.loads(tables.summaries_json({"Vanilla": v, "Block": b}))  # strict JSON
    assert data["Vanilla"]["compute_bound_batch"] is None  # infinite in the estimate
    assert data["Block"]["batch"] == b.batch
    csv = tables.breakdowns_csv({"Vanilla": v, "Block": b})
    assert csv.splitlines()[0].startswith("side,model,phase,name,flops")
    assert len(csv.splitlines()) == 1 + len(v.ops) + len(b.ops)


def test_formatting():
    assert fmt.tokens_per_s(12531.6) == "12,532 tok/s"
    assert fmt.seconds(0.0225) == "22.5 ms"
    assert fmt.seconds(1.051) == "1.05 s"
    assert fmt.seconds(4.2e-5) == "42 µs"
    assert fmt.bytes_(239_000_000) == "227.9 MiB"
    assert fmt.bytes_(3 * 2**30) == "3.00 GiB"
    assert fmt.count(math.inf) == "∞"
    assert fmt.ratio(6.1329) == "6.13×"
    assert fmt.model_name("block_main_b4_1.2b") == "Block 1.4B"
    assert fmt.model_name("custom-block") == "custom-block"
    assert fmt.quantity("decode/layers.attn.core/kv_read_bytes", 2**31) == "2.00 GiB"
    assert fmt.quantity("ttft_s", 0.5) == "500 ms"


# --- formula view -------------------------------------------------------------------------------

def test_legend_names_stacks_and_substitutes_values():
    expr = 2 * sy.BLOCK_DEC.N * sy.BLOCK_DEC.d_h * sy.S
    vals = {sy.BLOCK_DEC.N: 12.0, sy.BLOCK_DEC.d_h: 128.0, sy.S: 2048.0}
    legend = formula_view.legend_table(expr, vals).set_index("symbol")
    assert legend.loc["N_b", "meaning"] == "layers (block decoder)"
    assert legend.loc["d_h_b", "meaning"] == "head dimension (block decoder)"
    assert legend.loc["S", "value"] == 2048
    text = formula_view.substituted_latex(expr, vals)
    assert "(12)" in text and "(128)" in text and "(2048)" in text
    assert formula_view.number_latex(2.5e20) == r"2.5 \cdot 10^{20}"


# --- design space -------------------------------------------------------------------------------

def test_axis_sweep_block_length_keeps_divisors_only():
    models = {"Vanilla": get_preset("vanilla_410"), "Block": get_preset("block_main_b4_1.2b")}
    hw = get_hardware("h100-sxm-80gb")
    df = design.axis_sweep(models, hw, PREFILL, "static", "block_length", "throughput_tokens_per_s")
    block = df[df["side"] == "Block"]
    assert block["x"].tolist() == [1, 2, 4, 8, 16, 32, 64]  # all divide 2048
    at4 = block[block["x"] == 4]["value"].item()
    assert at4 == pytest.approx(estimate("block_main_b4_1.2b", hw, PREFILL).throughput_tokens_per_s)
    vanilla = df[df["side"] == "Vanilla"]["value"]
    assert vanilla.nunique() == 1  # flat: a vanilla model has no block length


def test_axis_sweep_batch_drops_what_does_not_fit():
    models = {"Vanilla": get_preset("vanilla_410")}
    hw = get_hardware("h100-sxm-80gb")
    df = design.axis_sweep(models, hw, PREFILL, "static", "batch", "tpot_s")
    max_batch = estimate("vanilla_410", hw, PREFILL).max_batch
    assert df["x"].max() <= max_batch < 2 * df["x"].max()
    with pytest.raises(ValueError, match="^axis:"):
        design.axis_sweep(models, hw, PREFILL, "static", "colour", "tpot_s")


def test_heatmap_masks_batches_that_do_not_fit():
    hw = get_hardware("h100-sxm-80gb")
    pivot = design.heatmap(get_preset("vanilla_410"), hw, PREFILL, "static",
                           "throughput_tokens_per_s")
    assert list(pivot.columns) == list(design.HEAT_BATCHES)
    assert list(pivot.index) == list(design.HEAT_PROMPTS)
    wl = Workload(batch=64, prompt_tokens=1024, generated_tokens=128)
    assert pivot.loc[1024, 64] == pytest.approx(estimate("vanilla_410", hw, wl)
                                                .throughput_tokens_per_s)
    assert math.isnan(pivot.loc[32768, 4096])


def test_pareto_frontier():
    assert figures.pareto_mask([1, 2, 3, 2], [10, 5, 20, 30]).tolist() == [True, False, False,
                                                                          True]
    par = design.pareto(get_hardware("h100-sxm-80gb"), PREFILL, "static")
    assert len(par) == 10
    assert par.set_index("preset").loc["block_main_b4_5", "pareto"]


def test_usable_hardware_skips_devices_without_the_dtype():
    devices = [get_hardware(i) for i in ("h100-sxm-80gb", "v100-sxm2-16gb", "m4-max")]
    ok, skipped = design.usable_hardware(devices, "static")
    assert [d.id for d in ok] == ["h100-sxm-80gb"]
    assert skipped == ["v100-sxm2-16gb", "m4-max"]


# --- figures ------------------------------------------------------------------------------------

def test_roofline_points_lie_on_the_roof():
    """Pure roofline (no overheads): every op's attained rate is min(pi, beta * intensity)."""
    hw = get_hardware("h100-sxm-80gb")
    pi, beta = hw.compute_flops_per_s("bf16"), hw.bandwidth_bytes_per_s()
    for model in ("vanilla_410", "block_main_b4_1.2b"):
        pts = figures.roofline_points(estimate(model, hw, PREFILL), "x", pi)
        roof = np.minimum(pi, beta * pts["intensity_flops_per_byte"])
        assert len(pts) > 5
        assert pts["attained_flops_per_s"].to_numpy() == pytest.approx(roof.to_numpy(), rel=1e-9)
        bound = np.where(pts["intensity_flops_per_byte"] >= pi / beta, "compute", "memory")
        assert (pts["bound"] == bound).all()
    fig = figures.roofline_figure(pi, beta, pts, "t")
    ridge = fig.data[2]
    assert ridge.x[0] == pytest.approx(pi / beta) and ridge.y[0] == pi


def test_figures_build():
    v = estimate("vanilla_410", "h100-sxm-80gb", PREFILL)
    b = estimate("block_main_b4_1.2b", "h100-sxm-80gb", PREFILL)
    phases = figures.phase_time_figure({"Vanilla": v, "Block": b})
    total = sum(np.asarray(t.y) for t in phases.data)
    assert total == pytest.approx([v.request_time_s * 1e3, b.request_time_s * 1e3])
    ops = figures.op_time_figure(b, "t")
    assert {t.name for t in ops.data} <= {"compute-bound", "memory-bound", "overhead-bound"}
    assert "block_decoder.step · layers.attn.core" in ops.layout.yaxis.categoryarray
    pivot = pd.DataFrame([[1.0, np.nan]], index=[128], columns=[1, 2])
    heat = figures.heatmap_figure(pivot, "t", "x", "y", "z")
    assert heat.data[0].z[0][1] is None


# --- relative costs (docs/model.md 4.1) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def derived():
    return relative_costs.derive(get_preset("vanilla_410"))


def test_derived_relative_costs_match_the_paper_for_the_block_decoder(derived):
    by = {(d.metric, d.item, d.decoder): d.leading for d in derived}
    lb = sy.L_B
    assert by[("Memory", "Parameters", "block")] == 1
    assert sp.simplify(by[("Memory", "KV cache", "block")] - 1 / lb) == 0
    assert sp.simplify(by[("IO", "Parameters", "block")] - 1 / lb) == 0
    assert sp.simplify(by[("IO", "KV cache", "block")] - lb**-2) == 0
    assert sp.simplify(by[("FLOPs", "Attention scores", "block")] - lb**-2) == 0
    assert sp.simplify(by[("FLOPs", "Linear projections", "block")] - 1 / lb) == 0


def test_derived_relative_costs_token_decoder(derived):
    by = {(d.metric, d.item, d.decoder): d.leading for d in derived}
    L = relative_costs.L
    assert by[("Memory", "Parameters", "token")] == 1
    assert by[("IO", "Parameters", "token")] == 1
    # the paper's L_B / L, with the code's exact cache size P + L_B - 1 (docs/model.md 2.3)
    assert sp.simplify(by[("Memory", "KV cache", "token")] - (sy.L_B + sy.P - 1) / L) == 0
    # linear FLOPs per token: (P + L_B - 1) / L_B of a vanilla stack (1.25 at P=2, L_B=4)
    assert sp.simplify(by[("FLOPs", "Linear projections", "token")]
                       - (sy.L_B + sy.P - 1) / sy.L_B) == 0
    for item in ("KV cache", "Attention scores"):  # both vanish like 1/L
        metric = "IO" if item == "KV cache" else "FLOPs"
        assert sp.limit(by[(metric, item, "token")], L, sp.oo) == 0


def test_relative_costs_at_inputs_and_markdown(derived):
    van = get_preset("vanilla_410")
    at = relative_costs.evaluate(derived, van, 4, 2, 4, 65536)
    assert at[("IO", "KV cache", "block")] == pytest.approx(1 / 16, rel=1e-3)
    assert at[("Memory", "KV cache", "block")] == pytest.approx(1 / 4, rel=1e-3)
    assert at[("FLOPs", "Linear projections", "token")] == pytest.approx(1.25, rel=1e-3)
    table = relative_costs.markdown_table(derived, at, "block")
    assert table.count("\n") == 7 and r"\frac{1}{L_{B}^{2}}" in table
    token = relative_costs.markdown_table(derived, at, "token")
    assert r"\frac{L_{B} + P - 1}{L}" in token and token.endswith("| 1.25 |")


# --- validation datasets ------------------------------------------------------------------------

def test_validation_loader_is_defensive(tmp_path):
    assert vd.load_results(tmp_path / "missing").empty
    (tmp_path / "a").mkdir()
    good = {"model": "m", "phase": "decode", "device": "cpu", "predicted_s": 2.0,
            "measured_s": 4.0, "env": {"torch": "2.13"}, "counted_flops": 8e9, "bytes": 2e9}
    lines = [json.dumps(good), "", "not json", json.dumps([1, 2]),
             json.dumps(good | {"measured_s": 0}), json.dumps({"model": "m"}),
             json.dumps(good | {"phase": None}), json.dumps(good | {"predicted_s": 1.0})]
    (tmp_path / "a" / "run.jsonl").write_text("\n".join(lines))
    (tmp_path / "notes.txt").write_text("ignored")
    data = vd.load_results(tmp_path)
    assert data.files == ["a/run.jsonl"]
    assert len(data.frame) == 2
    assert len(data.problems) == 5
    assert any("a/run.jsonl:3: not JSON" in p for p in data.problems)
    assert any("missing key(s) phase, device, predicted_s, measured_s" in p
               for p in data.problems)
    df = data.frame
    assert df["abs_pct_error"].tolist() == [50.0, 75.0]
    assert df["env.torch"].tolist() == ["2.13", "2.13"]
    cols = vd.display_columns(df.assign(**{"spec.stack.n_layers": 2}))
    assert cols[:5] == list(vd.REQUIRED) and "spec.stack.n_layers" not in cols
    assert df["flops"].tolist() == [8e9, 8e9]  # alias counted_flops
    mape = vd.mape_table(df)
    assert mape.iloc[0]["mape_pct"] == 62.5 and mape.iloc[0]["points"] == 2
    pts = vd.roofline_points(df)
    assert pts["intensity_flops_per_byte"].tolist() == [4.0, 4.0]
    assert pts["attained_flops_per_s"].tolist() == [2e9, 2e9]


def test_validation_loader_takes_the_report_beside_a_dataset(tmp_path):
    run = tmp_path / "cpu"
    run.mkdir()
    base = {"model": "m", "phase": "decode_step", "device": "cpu", "measured_s": 2.0}
    recs = [base | {"point_id": f"p{i}", "predicted_s": 0.5} for i in range(3)]
    (run / "dataset.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    pd.DataFrame({"point_id": ["p0", "p1", "p2"], "predicted_s": [1.0, 1.5, 1.0],
                  "predicted_calibrated_s": [2.2, 1.8, -1.0],
                  "split": ["test", "train", "test"]}).to_csv(run / "points.csv", index=False)
    data = vd.load_results(tmp_path)
    assert data.problems == ["cpu/points.csv: point p2: bad predictions, not used"]
    df = data.frame.set_index("point_id")
    # the report's (current) uncalibrated prediction replaces the stored one where it exists
    assert df["predicted_s"].tolist() == [1.0, 1.5, 0.5]
    assert df["abs_pct_error"].tolist() == [50.0, 25.0, 75.0]
    cal = vd.with_prediction(data.frame, "predicted_calibrated_s")
    assert cal["point_id"].tolist() == ["p0", "p1"]
    assert cal["abs_pct_error"].tolist() == pytest.approx([10.0, 10.0])
    with pytest.raises(ValueError, match="prediction: expected one of"):
        vd.with_prediction(data.frame, "measured_s")
    (run / "points.csv").write_text("point_id,predicted_s\np0,1.0\n")
    data = vd.load_results(tmp_path)
    assert data.problems == ["cpu/points.csv: missing column(s) predicted_calibrated_s, split"]
    assert vd.with_prediction(data.frame, "predicted_calibrated_s").empty


def test_op_profile_loader(tmp_path):
    ops = tmp_path / "cpu" / "ops"
    ops.mkdir(parents=True)
    good = {"model": "vanilla_70", "phase": "decode_step", "batch": 8, "context": 128,
            "hardware": "cpu-x", "ops": [
                {"op": "lm_head", "measured_s": 0.02, "predicted_s": 0.01},
                {"op": "layers.attn", "measured_s": 0.001, "predicted_s": 0.0},
                {"op": "layers.attn.kv_cache", "measured_s": 0.0, "predicted_s": 0.002},
                {"op": "idle", "measured_s": 0.0, "predicted_s": 0.0},
                {"op": "bad", "measured_s": -1.0, "predicted_s": 0.0}]}
    (ops / "a.json").write_text(json.dumps(good))
    (ops / "b.json").write_text("{broken")
    (ops / "c.json").write_text(json.dumps({"model": "m", "ops": []}))
    (ops / "d.json").write_text(json.dumps(good | {"ops": [{"op": "x"}]}))
    prof = vd.load_op_profiles(tmp_path)
    assert list(prof.tables) == ["cpu/ops/a.json"]
    table = prof.tables["cpu/ops/a.json"]
    assert table["op"].tolist() == ["lm_head", "layers.attn", "layers.attn.kv_cache"]
    assert table["ratio"].iloc[0] == pytest.approx(0.5) and math.isnan(table["ratio"].iloc[2])
    assert prof.titles["cpu/ops/a.json"].startswith("vanilla_70 decode_step B=8 context=128")
    assert len(prof.problems) == 4
    assert any("a.json: 1 op row(s)" in p for p in prof.problems)
    assert any("b.json: unreadable" in p for p in prof.problems)
    assert any("c.json: missing key(s) phase, batch, context, hardware" in p
               for p in prof.problems)
    assert any("d.json: no op row" in p for p in prof.problems)
    fig = figures.op_profile_figure(table, "t", top=2)
    assert [list(d.y) for d in fig.data] == [["layers.attn.kv_cache", "lm_head"]] * 2


def test_sweep_helper_agrees_with_api():
    hw = get_hardware("h100-sxm-80gb")
    df = design.axis_sweep({"Block": get_preset("block_main_b4_5")}, hw, PREFILL, "static",
                           "generated_tokens", "ttft_s")
    ref = sweep("block_main_b4_5", hw, batch="max", prompt_tokens=2048,
                generated_tokens=list(design.LENGTHS), metrics=["ttft_s"])
    assert df["value"].tolist() == pytest.approx(ref["ttft_s"].tolist(), rel=1e-12)


# --- number formatting and shared scales (issue 15) -----------------------------------------

def test_log_axes_label_powers_of_ten_in_one_si_style():
    v = estimate("vanilla_410", "h100-sxm-80gb", Workload(batch=8))
    pts = figures.roofline_points(v, "Vanilla", 989e12)
    fig = figures.roofline_figure(989e12, 3.35e12, pts, "t").to_plotly_json()["layout"]
    for axis in (fig["xaxis"], fig["yaxis"]):
        assert axis["type"] == "log" and axis["dtick"] == 1  # no 2..9 minor labels
        assert axis["tickformat"] == ".3~s"  # 100T, never 1e+14 beside 100T
    curve = pd.DataFrame({"batch": [1, 2, 4], "tpot_s": [0.01, 0.011, 0.012],
                          "ttft_s": [0.1] * 3, "throughput_tokens_per_s": [100.0, 180, 330],
                          "memory_bytes_total": [1e9] * 3})
    cap = figures.capacity_figure(curve, 4, None, "c").to_plotly_json()["layout"]
    assert cap["xaxis"]["tickformat"] == "d" and cap["xaxis"]["dtick"] == 1
    assert cap["yaxis2"]["tickformat"] == ".3~s" and cap["yaxis2"]["tickmode"] == "auto"
    # room for the right axis title (it was clipped) and the legend out of its way
    assert cap["margin"]["r"] >= 60 and cap["legend"]["orientation"] == "h"


def test_heatmap_cells_share_one_number_style():
    pivot = pd.DataFrame([[546.0, 1090.0], [np.nan, 2.5e6]], index=[128, 2048], columns=[1, 8])
    fig = figures.heatmap_figure(pivot, "t", "batch", "prompt", "throughput", log_z=True)
    assert [list(r) for r in fig.data[0].text] == [["546", "1.09 k"], ["", "2.5 M"]]
    secs = figures.heatmap_figure(pivot / 1e6, "t", "b", "p", "TTFT", show=fmt.for_unit("s"))
    assert list(secs.data[0].text[0]) == ["546 µs", "1.09 ms"]
    assert fmt.for_unit("bytes")(3 * 2**30) == "3.00 GiB"


def test_per_op_charts_share_one_time_scale():
    w = Workload(batch="max")
    ests = [estimate("vanilla_410", "h100-sxm-80gb", w),
            estimate("block_main_b4_1.2b", "h100-sxm-80gb", w)]
    x_max = figures.shared_time_range_ms(ests)
    longest = max(float(e.breakdown()["time_s"].max()) for e in ests) * 1e3
    assert longest < x_max <= longest * 1.06
    ranges = [figures.op_time_figure(e, "t", x_max_ms=x_max).layout.xaxis.range for e in ests]
    assert ranges[0] == ranges[1] == (0, x_max)


def test_decode_time_per_token_compares_tokens_not_steps():
    w = Workload(batch=64, prompt_tokens=2048, generated_tokens=128)
    v = estimate("vanilla_410", "h100-sxm-80gb", w)
    b = estimate("block_main_b4_1.2b", "h100-sxm-80gb", w)
    assert v.decode_step_tokens == 1 and v.decode_time_per_token_s == v.decode_step_time_s
    assert b.decode_step_tokens == 4
    assert b.decode_time_per_token_s == pytest.approx(b.decode_step_time_s / 4, rel=1e-15)
    labels = [m.label for m in tables.COMPARE_METRICS]
    assert "Decode time per token" in labels
