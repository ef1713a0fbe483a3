"""Official-code profiles, published measurements, their fit, calibrated defaults
(docs/published.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import torch

from costmodel import symbols as sy
from costmodel.api import estimate
from costmodel.calibration import (
    calibrated_hardware,
    calibration_for,
    expectation,
    is_pure_roofline,
    load_calibrations,
)
from costmodel.errors import UserError
from costmodel.hardware import get_hardware
from costmodel.implementation import PROFILES, get_implementation
from costmodel.ops import ImplStructure, StackStructure, stack_ops
from costmodel.paper import TABLE1
from costmodel.presets import get_preset
from costmodel.workload import Workload
from reference import build_model
from validation.published import (
    REQUIRED,
    PublishedPredictor,
    fit_rows,
    load,
    split_rows,
)

ROOT = Path(__file__).resolve().parents[1]
TABLE1_CSV = ROOT / "validation" / "published" / "paper_table1.csv"
NEMO_CSV = ROOT / "validation" / "published" / "nemo_llama2_7b.csv"


# --- profiles ---------------------------------------------------------------------------------

def test_official_attention_kind_per_stack():
    off = get_implementation("official")
    assert [off.attention_for(r) for r in ("vanilla", "block_decoder", "token_decoder")] == [
        "fused", "fused", "materialized"]  # docs/model.md 2.1, 2.2: FA2, FA2, eager
    eager = get_implementation("official-eager")
    assert {eager.attention_for(r) for r in ("vanilla", "block_decoder", "token_decoder")} == {
        "materialized"}
    hf = get_implementation("hf-legacy")
    assert hf.attention_for("block_decoder") == "materialized"
    with pytest.raises(ValueError, match="role"):
        off.attention_for("encoder")


def _core(prefix: str, profile: str):
    im = ImplStructure.of(get_implementation(profile))
    st = StackStructure.of(get_preset("vanilla_70").stack)
    ops = stack_ops(prefix, st, im, sy.VANILLA, sy.B, sp.Integer(1), sy.c, embed=True,
                    head_rows=sp.Integer(1))
    return next(o for o in ops if o.name.endswith("attn.core"))


def test_official_core_traffic_follows_the_stack_kind():
    x = sy.VANILLA
    vals = {x.N: 1, sy.B: 4, sy.c: 99, x.H: 8, x.K: 8, x.d_h: 64, sy.s_a: 2, sy.s_kv: 2,
            sy.s_kvs: 0}  # a dense cache: no int8 scales (docs/precision.md)
    scores = 4 * 8 * 1 * 100  # B H q n_k
    fused = _core("", "official")  # vanilla: FA2; fp32 keys cast to bf16 (a copy each way)
    # eager fp32 scores (HF 4.39 GPT-NeoX _attn): q cast to fp32, five kernels writing fp32
    # scores (zeros, baddbmm, where, + padding mask, softmax), a cast to bf16, AV
    eager = _core("token_decoder.", "official")
    q_and_out = 4 * 8 * 64 * 2
    cast = 4 * 8 * 64 * 100 * 2
    assert fused.act_write_bytes.subs(vals) == q_and_out + cast
    assert eager.act_write_bytes.subs(vals) == 2 * q_and_out + q_and_out + scores * (5 * 4 + 2)
    # reads: q (bf16) and its fp32 copy, four fp32 score reads and the cast's, AV's bf16
    # read, the [q, n_k] bool causal mask and the [B, n_k] bf16 padding mask
    assert eager.act_read_bytes.subs(vals) == (q_and_out + 2 * q_and_out + scores * (5 * 4 + 2)
                                               + 1 * 100 + 4 * 100 * 2)
    assert (fused.kernels.subs(vals), eager.kernels.subs(vals)) == (2, 8)
    # with fp32 compute the casts to the compute dtype are no kernels
    fp32 = vals | {sy.s_a: 4}
    assert (fused.kernels.subs(fp32), eager.kernels.subs(fp32)) == (1, 7)
    # fp32 keys: a (k, v) pair is 4 + 2 bytes in both kinds
    assert fused.kv_read_bytes.subs(vals) == eager.kv_read_bytes.subs(vals) == 4 * 8 * 64 * 100 * 6


def test_split_k_decode_adds_partial_results_and_a_combine_kernel():
    from costmodel.implementation import Implementation

    impl = Implementation(name="fd", attention="split_k")
    im = ImplStructure.of(impl)
    st = StackStructure.of(get_preset("vanilla_70").stack)
    step = stack_ops("", st, im, sy.VANILLA, sy.B, sp.Integer(1), sy.c, embed=True,
                     head_rows=sp.Integer(1))
    fused = stack_ops("", st, ImplStructure.of(Implementation(name="f")), sy.VANILLA, sy.B,
                      sp.Integer(1), sy.c, embed=True, head_rows=sp.Integer(1))
    core_s = next(o for o in step if o.name == "layers.attn.core")
    core_f = next(o for o in fused if o.name == "layers.attn.core")
    x = sy.VANILLA
    vals = {x.N: 1, sy.B: 2, sy.c: 511, x.H: 8, x.K: 8, x.d_h: 64, sy.s_a: 2, sy.s_kv: 2}
    extra = core_s.act_write_bytes.subs(vals) - core_f.act_write_bytes.subs(vals)
    assert extra == 2 * 8 * 65 * 512 // 256 * 2  # B H (d_h+1) n_k/256 elements, 2 bytes
    assert core_s.kernels.subs(vals) == 2 and core_s.flops == core_f.flops


def test_reference_official_mode_materializes_the_token_decoder_only():
    model = build_model(get_preset("block_main_b4_5"), device="meta", dtype=torch.bfloat16)
    model.setup_inference(1, 4, 2, mode="official")
    bd = {layer.attn.core.materialize for layer in model.block_decoder.layers}
    td = {layer.attn.core.materialize for layer in model.token_decoder.layers}
    assert bd == {False} and td == {True}
    assert model.block_decoder.layers[0].attn.kv_cache.key_dtype == torch.float32


def test_official_count_is_exact_on_a_small_request():
    from validation.count import compare

    for profile in ("official", "official-eager"):
        rep = compare(get_preset("block_main_b4_5"), 2, 4, 8, profile)
        assert rep.mismatches == 0, profile


def test_official_decode_memory_is_three_times_the_16bit_kv_cache():
    # fp32 keys (x1.5) and the previous tuple alive during a step (x2): docs/published.md 1
    wl = Workload(batch=1, prompt_tokens=128, generated_tokens=2048)
    static = estimate("vanilla_31", "h100-sxm-80gb", wl, "static")
    off = estimate("vanilla_31", "h100-sxm-80gb", wl, "official")
    assert off.kv_cache_bytes_per_sample == pytest.approx(3 * static.kv_cache_bytes_per_sample)


# --- published files ----------------------------------------------------------------------

def test_table1_csv_holds_spec_5_2():
    rows = {(r.model, r.setting, r.metric): r.value for r in load([TABLE1_CSV])}
    assert len(rows) == 40
    for t in TABLE1:
        assert rows[(t.preset, "2048/128", "throughput_tokens_per_s")] == pytest.approx(
            1e3 * t.thr_prefill_ktok_s)
        assert rows[(t.preset, "128/2048", "throughput_tokens_per_s")] == pytest.approx(
            1e3 * t.thr_decode_ktok_s)
        assert rows[(t.preset, "2048/128", "memory_bytes_per_sample")] == pytest.approx(
            1e6 * t.mem_prefill_MB)


def test_schema_readme_documents_every_column():
    text = (ROOT / "validation" / "published" / "README.md").read_text()
    assert all(f"`{c}`" in text for c in REQUIRED)


def test_unrepresentable_rows_are_kept_with_a_reason():
    rows = load([NEMO_CSV])
    skipped = [r for r in rows if r.skip]
    assert len(rows) == 16 and len(skipped) == 8
    assert all(r.tp == 2 and "tensor parallel" in r.skip for r in skipped)
    assert rows[0].value == pytest.approx(0.234)  # ms -> s


def _write(tmp_path: Path, **changes: str) -> Path:
    rec = {"source": "test", "model": "vanilla_70", "hardware": "h100-sxm-80gb",
           "implementation": "static", "weight_dtype": "bf16", "kv_dtype": "bf16", "tp": "1",
           "batch": "4", "memory_reserve_bytes": "0", "prompt_tokens": "128",
           "generated_tokens": "16", "metric": "request_time_s", "value": "10", "unit": "ms",
           "notes": ""} | changes
    path = tmp_path / "t.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rec))
        w.writeheader()
        w.writerow(rec)
    return path


@pytest.mark.parametrize("change, message", [
    ({"metric": "speed"}, "metric: unknown"),
    ({"unit": "tokens/s"}, "unit: 'tokens/s' is not a unit of request_time_s"),
    ({"batch": "0"}, "batch: must be >= 1"),
    ({"value": "-3"}, "value: must be > 0"),
    ({"hardware": "h999"}, "hardware:"),
    ({"implementation": "vllm"}, "implementation: unknown profile"),
    ({"source": " "}, "source: must cite"),
])
def test_bad_rows_name_the_file_line_and_column(tmp_path, change, message):
    path = _write(tmp_path, **change)
    with pytest.raises(UserError, match=message) as e:
        load([path])
    assert f"{path}:2" in str(e.value)


def test_split_is_seeded_and_stratified():
    rows = load([TABLE1_CSV])
    train, test = split_rows(rows, seed=0)
    assert split_rows(rows, seed=0) == (train, test)
    assert sorted(train + test) == list(range(40)) and not set(train) & set(test)
    held = [rows[i] for i in test]
    for kind, per_setting in (("vanilla", 1), ("block", 2)):  # a third of 4 and of 6
        for setting in ("2048/128", "128/2048"):
            n = sum(r.kind == kind and r.setting == setting
                    and r.metric == "throughput_tokens_per_s" for r in held)
            assert n == per_setting


def test_fit_recovers_known_parameters(tmp_path):
    """Rows generated by the cost model with known efficiencies are fitted back to them."""
    truth = {"matmul": 0.6, "bandwidth": 0.5, "overlap": 1.0, "kernel_overhead_s": 0.0,
             "forward_overhead_s": 2e-4}
    recs = []
    for b in (1, 8, 64):
        for s, g in ((128, 16), (1024, 8)):
            recs.append({"batch": str(b), "prompt_tokens": str(s), "generated_tokens": str(g)})
    path = tmp_path / "synthetic.csv"
    base = {"source": "synthetic", "model": "vanilla_70", "hardware": "h100-sxm-80gb",
            "implementation": "static", "weight_dtype": "bf16", "kv_dtype": "bf16", "tp": "1",
            "memory_reserve_bytes": "0", "metric": "request_time_s", "value": "1", "unit": "s",
            "notes": ""}
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(base) + ["batch", "prompt_tokens",
                                                       "generated_tokens"])
        w.writeheader()
        for r in recs:
            w.writerow(base | r)
    rows = load([path])
    values = PublishedPredictor(rows).predict(truth)
    for r, v in zip(rows, values, strict=True):
        r.value = float(v)
    fit = fit_rows(rows, list(range(len(rows))), "synthetic")
    got = PublishedPredictor(rows).predict(fit.params)
    # the predictions are recovered (the per-kernel and per-forward overheads trade off on
    # so few shapes, so individual parameters need not be)
    assert np.allclose(got, values, rtol=1e-3) and fit.cost < 1e-8


# --- calibrated defaults --------------------------------------------------------------------

def test_calibration_records_are_sourced_and_apply():
    recs = load_calibrations()
    rec = calibration_for("h100-sxm-80gb", "official-eager")
    assert rec is not None and rec.id in recs
    assert rec.fitted_on == ["paper_table1.csv"] and "Table 1" in rec.sources[0]
    assert rec.heldout_mape_pct["throughput_tokens_per_s"] <= 15
    hw = calibrated_hardware("h100-sxm-80gb", "official-eager")
    assert hw is not None and not is_pure_roofline(hw)
    assert hw.efficiency.bandwidth == rec.efficiency.bandwidth
    assert is_pure_roofline(get_hardware("h100-sxm-80gb"))
    assert calibrated_hardware("a100-sxm-80gb", "official-eager") is None


def test_expectation_is_below_the_bound_and_says_which_is_which():
    wl = Workload(batch=64, prompt_tokens=128, generated_tokens=64)
    exp = expectation("block_main_b4_5", "h100-sxm-80gb", wl, "official-eager")
    assert exp.expected is not None and exp.calibration is not None
    assert exp.expected.throughput_tokens_per_s < exp.bound.throughput_tokens_per_s
    assert "h100-sxm-80gb/official-eager" in exp.statement
    none = expectation("block_main_b4_5", "a100-sxm-80gb", wl, "official-eager")
    assert none.expected is None and "bound" in none.statement


def test_every_profile_is_a_reference_mode():
    from reference.layers import INFERENCE_MODES

    assert set(INFERENCE_MODES) == set(PROFILES)


# --- the dashboard's data helpers (no streamlit) ------------------------------------------

def test_points_go_on_their_own_devices_roofline():
    from app import validation_data
    from costmodel.hardware import load_database

    db = load_database()
    cpu = "cpu-amd-epyc-1t-measured-20261128"
    rec = validation_data.device_record(cpu, db, ROOT / "validation" / "results")
    assert rec is not None and rec.kind == "cpu" and rec.id == cpu  # its own measured record
    assert validation_data.device_record("no-such-device", db, ROOT / "validation" /
                                         "results") is None  # shown without a roof
    runs = validation_data.load_published(ROOT / "validation" / "results")
    by_hw = validation_data.published_roofline_points(runs["paper_table1"])
    assert list(by_hw) == ["h100-sxm-80gb"] and len(by_hw["h100-sxm-80gb"]) == 20


def test_paper_spearman_agrees_with_scipy():
    import pandas as pd
    from scipy.stats import spearmanr

    from costmodel.paper import spearman

    rng = np.random.default_rng(3)
    measured = rng.lognormal(size=20)
    predicted = measured * rng.lognormal(sigma=0.8, size=20)
    predicted[4] = predicted[5]  # a tie: average ranks
    table = pd.DataFrame({"paper_throughput_tok_s": measured, "x_throughput_tok_s": predicted})
    assert spearman(table)["x"] == pytest.approx(spearmanr(measured, predicted).statistic)
