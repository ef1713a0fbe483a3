"""Precision formats in the cost model: bytes by hand, rates, errors, CLI (docs/precision.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from costmodel import Workload, estimate, get_implementation, get_preset, sweep
from costmodel.cli import _load_model, main
from costmodel.precision import precision_values

ROOT = Path(__file__).resolve().parent.parent
LLAMA7B = str(ROOT / "examples/configs/llama-2-7b.json")
WL = Workload(batch=1, prompt_tokens=5, generated_tokens=200)


def _llama_parts() -> tuple[int, int, int]:
    """Llama-2-7B by hand: linear weights, linear output channels, other parameters."""
    D, F, N, V = 4096, 11008, 32, 32000
    per_layer_w = D * 3 * D + D * D + 2 * D * F + F * D  # qkv, o, gate+up, down
    per_layer_ch = 3 * D + D + 2 * F + D
    linear = N * per_layer_w + D * V  # + LM head
    channels = N * per_layer_ch + V
    other = V * D + N * 2 * D + D  # embedding, two RMSNorms per layer, final norm
    return linear, channels, other


@pytest.mark.parametrize("fmt, per_weight, per_channel", [
    ("bf16", 2, 0), ("w8a16", 1, 2), ("w4a16-g32", 0.5 + 4 / 32, 0), ("w4a16-g128", 0.5 + 4 / 128, 0),
])
def test_llama7b_weight_bytes_by_hand(fmt, per_weight, per_channel):
    linear, channels, other = _llama_parts()
    expected = linear * per_weight + channels * per_channel + other * 2
    impl = get_implementation("static", weight_dtype=fmt)
    est = estimate(_load_model(LLAMA7B), "a100-sxm-80gb", WL, impl)
    assert est.weights_bytes == expected
    if fmt == "bf16":
        assert est.weights_bytes == 2 * _load_model(LLAMA7B).params_total


def test_quantized_decode_ordering_and_memory_bound_ratio():
    """Decode at batch 1 is memory-bound: tokens/s ordering follows the bytes read."""
    spec = _load_model(LLAMA7B)
    tps = {f: estimate(spec, "a100-sxm-80gb", WL, get_implementation("static", weight_dtype=f))
           for f in ("bf16", "w8a16", "w4a16-g32")}
    assert (tps["bf16"].throughput_tokens_per_s < tps["w8a16"].throughput_tokens_per_s
            < tps["w4a16-g32"].throughput_tokens_per_s)
    r = tps["w8a16"].throughput_tokens_per_s / tps["bf16"].throughput_tokens_per_s
    assert 1.8 < r < 2.0  # a bit under the 1.96x weight-byte ratio: KV and activations stay
    deq = [o for o in tps["w4a16-g32"].ops if o.name.endswith("mlp.down") and o.phase == "decode"]
    assert deq[0].dequant_flops == 2 * 11008 * 4096 * 32 * 199  # 2 per weight, 199 steps


def test_int8_kv_bytes_include_one_scale_per_vector():
    spec = get_preset("vanilla_410")
    st = spec.stack
    base = estimate(spec, "h100-sxm-80gb", WL, "static")
    q = estimate(spec, "h100-sxm-80gb", WL, get_implementation("static", kv_dtype="kv-int8"))
    f8 = estimate(spec, "h100-sxm-80gb", WL, get_implementation("static", kv_dtype="kv-fp8"))
    entries = 5 + 200 - 1
    per_entry = 2 * st.n_layers * st.kv_heads
    assert base.kv_cache_bytes_per_sample == per_entry * st.dh * 2 * entries
    assert q.kv_cache_bytes_per_sample == per_entry * (st.dh * 1 + 2) * entries
    assert f8.kv_cache_bytes_per_sample == per_entry * st.dh * entries
    assert base.weights_bytes == q.weights_bytes
    big = Workload(batch="max", prompt_tokens=2048, generated_tokens=128)
    assert (estimate(spec, "h100-sxm-80gb", big, get_implementation("static", kv_dtype="fp8"))
            .max_batch > estimate(spec, "h100-sxm-80gb", big, "static").max_batch)


def test_compute_dtype_sets_the_peak():
    """W8A8-fp8 multiplies at the fp8 peak, without dequantisation FLOPs."""
    from costmodel import get_hardware

    h100 = get_hardware("h100-sxm-80gb")
    spec = get_preset("vanilla_410")
    wl = Workload(batch=64, prompt_tokens=2048, generated_tokens=1)
    bf = estimate(spec, "h100-sxm-80gb", wl, "static")
    f8 = estimate(spec, "h100-sxm-80gb", wl, get_implementation("static", weight_dtype="w8a8-fp8"))
    assert f8.compute_dtype == "fp8" and f8.weight_dtype == "fp8"
    def t_math(e):
        return next(o.t_math_s for o in e.ops if (o.phase, o.name) == ("prefill", "layers.mlp.up"))

    ratio = h100.compute_flops_per_s("fp8") / h100.compute_flops_per_s("bf16")
    assert t_math(bf) / t_math(f8) == pytest.approx(ratio, rel=1e-12)
    assert bf.ttft_s > f8.ttft_s


def test_dtype_defaults_and_with_dtype_unchanged():
    assert precision_values("bf16", "bf16", "bf16") == {
        "s_w": 2, "s_wc": 0, "s_e": 2, "s_a": 2, "s_kv": 2, "s_kvs": 0, "q_w": 0, "q_kv": 0}
    impl = get_implementation("hf-legacy", dtype="fp32")
    assert (impl.weight_bytes_per_element, impl.kv_bytes_per_element, impl.kv_cache) == (4, 4,
                                                                                         "concat")


@pytest.mark.parametrize("kwargs, hw, message", [
    ({"weight_dtype": "int5"}, "h100-sxm-80gb", "weight_dtype: unknown format 'int5'"),
    ({"kv_dtype": "int4"}, "h100-sxm-80gb", "kv_dtype: unknown format 'int4'"),
    ({"weight_dtype": "int4-g96"}, "h100-sxm-80gb", "does not divide the input width 1024"),
    ({"weight_dtype": "w4a16-g32"}, "v100-sxm2-32gb", "has no bf16 rate; it has fp32, fp16"),
    ({"weight_dtype": "w8a8-fp8"}, "a100-sxm-80gb", "has no fp8 rate; it has fp32, tf32, bf16"),
])
def test_bad_precision_one_line(kwargs, hw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        estimate("vanilla_410", hw, WL, get_implementation("static", **kwargs))


def test_v100_runs_with_fp16_compute():
    est = estimate("vanilla_410", "v100-sxm2-32gb", WL,
                   get_implementation("static", weight_dtype="w4a16-g32", compute_dtype="fp16"))
    assert est.throughput_tokens_per_s > 0


def test_cli_flags_and_sweep_axes(tmp_path, capsys):
    assert main(["estimate", "--model", LLAMA7B, "--hardware", "a100-sxm-80gb", "--batch", "1",
                 "--prompt", "5", "--generate", "200", "--weight-dtype", "w8a16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    linear, channels, other = _llama_parts()
    assert out["weights_bytes"] == linear + 2 * channels + 2 * other
    assert out["weight_dtype"] == "int8"
    path = tmp_path / "s.csv"
    assert main(["sweep", "--model", "vanilla_410", "block_main_b4_1.2b", "--weight-dtype",
                 "bf16,w8a16", "--kv-dtype", "bf16,kv-fp8", "--out", str(path)]) == 0
    import pandas as pd

    df = pd.read_csv(path)
    assert len(df) == 8 and set(df["kv_dtype"]) == {"bf16", "fp8"}
    assert main(["estimate", "--model", "vanilla_410", "--prompt", "5", "--generate", "5",
                 "--kv-dtype", "int3"]) == 2
    assert "kv_dtype: unknown format 'int3'" in capsys.readouterr().err
    assert main(["formula", "decode/layers.attn.core/kv_read_bytes", "--kv-dtype", "int8"]) == 0
    expr = capsys.readouterr().out.split("\nwhere")[0]  # the formula, before its legend
    assert "s_kv" not in expr and "N*" in expr.replace(" ", "")


def test_sweep_matches_estimate_for_a_format():
    df = sweep("block_main_b4_1.2b", "h100-sxm-80gb", batch=8, prompt_tokens=512,
               generated_tokens=64, weight_dtype=["w4a16-g128"], kv_dtype="int8",
               metrics=("throughput_tokens_per_s", "memory_bytes_per_sample"))
    est = estimate("block_main_b4_1.2b", "h100-sxm-80gb",
                   Workload(batch=8, prompt_tokens=512, generated_tokens=64),
                   get_implementation("static", weight_dtype="w4a16-g128", kv_dtype="int8"))
    assert df["throughput_tokens_per_s"].iloc[0] == pytest.approx(est.throughput_tokens_per_s,
                                                                  rel=1e-12)
    assert df["memory_bytes_per_sample"].iloc[0] == pytest.approx(est.memory_bytes_per_sample)
