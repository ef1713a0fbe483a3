"""Sliding-window attention (docs/sliding-window.md) against hand arithmetic and explicit loops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from costmodel import Workload, estimate, get_preset, load_hf_config, spec_from_hf_config
from costmodel.hf_config import ConfigImportError
from costmodel.spec import BlockSpec, VanillaSpec

ROOT = Path(__file__).resolve().parent.parent
MISTRAL = ROOT / "examples" / "configs" / "mistral-7b-v0.1.json"
HW = "h100-sxm-80gb"


def windowed(spec: VanillaSpec, window: int | None) -> VanillaSpec:
    stack = spec.stack.model_dump() | {"sliding_window": window}
    return VanillaSpec.model_validate(spec.model_dump() | {"stack": stack,
                                                           "name": f"{spec.name}-w{window}"})


def run(spec, S, G, B=1):
    return estimate(spec, HW, Workload(batch=B, prompt_tokens=S, generated_tokens=G))


def op(est, phase, name):
    return next(r for r in est.ops if r.phase == phase and r.name == name)


def test_mistral_config_reads_its_window():
    spec = load_hf_config(MISTRAL)
    assert spec.stack.sliding_window == 4096
    # KV per entry: 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 2 bytes = 131,072 bytes
    per_entry = 2 * 32 * 8 * 128 * 2
    for S, G, entries in ((1000, 100, 1099), (4000, 97, 4096), (8192, 128, 4096),
                          (32000, 1, 4096)):
        est = run(spec, S, G)
        assert est.kv_cache_bytes_per_sample == per_entry * entries, (S, G)
    # an 8192-token prompt keeps 512 MiB of cache, not 1 GiB
    assert run(spec, 8192, 1).kv_cache_bytes_per_sample == 512 * 2**20


@pytest.mark.parametrize(("S", "G", "W"), [(100, 50, 1024), (1000, 60, 1024), (1024, 9, 1024),
                                           (2048, 128, 1024), (1020, 5, 1024), (1, 40, 16)])
def test_kv_reads_and_attention_flops_match_an_explicit_loop(S, G, W):
    base = get_preset("vanilla_410")  # N 24, H = K 16, d_h 64, bf16 KV
    est = run(windowed(base, W), S, G, B=3)
    N, K, H, dh, s = 24, 16, 16, 64, 2
    per_key = 2 * N * K * dh * s * 3  # K and V of every layer, batch 3
    # decode: the step at cached context c sees min(c + 1, W) keys
    keys = sum(min(c + 1, W) for c in range(S, S + G - 1))
    assert op(est, "decode", "layers.attn.core").kv_bytes == per_key * keys
    # prefill: query i (1-based) sees min(i, W) keys; useful FLOPs 4 H d_h per key, per layer
    seen = sum(min(i, W) for i in range(1, S + 1))
    assert op(est, "prefill", "layers.attn.core").useful_flops == 4 * 3 * H * dh * N * seen
    # the cache holds min(S + G - 1, W) entries
    assert est.kv_cache_bytes_per_sample == per_key / 3 * min(S + G - 1, W)


def test_costs_stop_growing_at_the_window():
    spec = windowed(get_preset("vanilla_410"), 1024)
    a, b = run(spec, 4096, 64, B=8), run(spec, 32768, 64, B=8)
    assert a.decode_step_time_s == b.decode_step_time_s
    assert a.tpot_s == pytest.approx(b.tpot_s, rel=1e-12)
    assert a.kv_cache_bytes_per_sample == b.kv_cache_bytes_per_sample
    full = get_preset("vanilla_410")
    assert run(full, 32768, 64, B=8).decode_step_time_s > 2 * b.decode_step_time_s
    # the full model's KV reads overtake its weights at ~7197 tokens; a 1024 window never does
    assert run(full, 2048, 8).kv_overtakes_weights_context == pytest.approx(7196.5625)
    assert run(spec, 32768, 8).kv_overtakes_weights_context == float("inf")
    # at batch 8 the KV reads of 8 sequences overtake at ~898 tokens, inside the window: the
    # same crossing as the full model's at batch 8
    at8 = run(full, 2048, 8, B=8).kv_overtakes_weights_context
    assert 0 < at8 < 1024 and b.kv_overtakes_weights_context == pytest.approx(at8)
    # a window of 1.05x the crossing does allow it, at the same context
    wide = run(windowed(full, 7600), 2048, 8)
    assert wide.kv_overtakes_weights_context == pytest.approx(7196.5625)


def test_a_window_longer_than_the_request_changes_nothing():
    base = get_preset("vanilla_410")
    a, b = run(base, 500, 100, B=4), run(windowed(base, 4096), 500, 100, B=4)
    for field in ("ttft_s", "tpot_s", "request_time_s", "kv_cache_bytes_per_sample",
                  "flops_total", "useful_flops_total", "kv_bytes_total", "max_batch"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-12), field


def test_qwen_window_counts_only_when_switched_on():
    cfg = json.loads(MISTRAL.read_text()) | {"model_type": "qwen2", "sliding_window": 4096,
                                             "use_sliding_window": False}
    assert spec_from_hf_config(cfg).stack.sliding_window is None
    cfg |= {"use_sliding_window": True, "max_window_layers": 0}
    assert spec_from_hf_config(cfg).stack.sliding_window == 4096
    cfg |= {"max_window_layers": 32}  # window only from layer 32 of 32: none
    assert spec_from_hf_config(cfg).stack.sliding_window is None
    cfg |= {"max_window_layers": 20}
    with pytest.raises(ConfigImportError, match="max_window_layers: .*mix"):
        spec_from_hf_config(cfg)


@pytest.mark.parametrize(("change", "named"), [
    ({"num_local_experts": 8}, "num_local_experts: mixture-of-experts"),
    ({"quantization_config": {"bits": 4}}, "quantization_config: quantized"),
    ({"layer_types": ["sliding_attention", "full_attention"]}, "layer_types: layers of"),
    ({"sliding_window": -1}, "sliding_window: expected a whole number"),
])
def test_unsupported_config_features_are_refused_by_name(change, named):
    cfg = json.loads(MISTRAL.read_text()) | change
    with pytest.raises(ConfigImportError, match=named):
        spec_from_hf_config(cfg)


def test_block_transformers_refuse_a_window():
    spec = get_preset("block_main_b4_1.2b").model_dump()
    spec["token_decoder"]["sliding_window"] = 64
    with pytest.raises(ValueError, match="token_decoder.sliding_window: .*vanilla models only"):
        BlockSpec.model_validate(spec)


def test_the_reference_refuses_a_window_instead_of_ignoring_it():
    pytest.importorskip("torch")
    from reference.layers import DecoderStack

    with pytest.raises(ValueError, match="sliding_window"):
        DecoderStack(windowed(get_preset("vanilla_410"), 64).stack)


def test_the_serving_simulator_refuses_a_window_instead_of_ignoring_it():
    from costmodel.errors import UserError
    from serving.predictor import build_predictor

    with pytest.raises(UserError, match="sliding-window attention"):
        build_predictor(load_hf_config(MISTRAL), HW)
