"""Exact counts of the reference equal the cost model's executed counts (issue 4).

FLOPs, weight bytes and KV bytes per (phase, op), parameter bytes and KV-cache bytes; zero
difference. Also: the fast counter equals `FlopCounterMode` module by module, and the meta
memos change no count.
"""

from __future__ import annotations

import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmodel import estimate
from costmodel.cli import main as cli_main
from costmodel.implementation import PROFILES as ALL_PROFILES
from costmodel.implementation import get_implementation
from costmodel.presets import PRESET_NAMES, get_preset
from costmodel.spec import BlockSpec, StackSpec, VanillaSpec
from costmodel.workload import Workload
from reference import build_model, counting_mode, flop_counter
from validation.count import compare, format_table, predicted_counts
from validation.tracing import op_name, trace_request

PROFILES = ("static", "hf-legacy")

# Two stack structures only (each new structure costs a sympy build of the formulas):
# GPT-NeoX (the presets) and a Llama-like stack (gated MLP, RMSNorm, no biases, sequential).
NEOX = {"mlp": "gelu", "norm": "layernorm"}
LLAMA = {"mlp": "gated_silu", "norm": "rmsnorm", "qkv_bias": False, "out_bias": False,
         "mlp_bias": False, "parallel_residual": False, "rotary_fraction": 1.0}


@st.composite
def stacks(draw: st.DrawFn, kind: dict, width_multiple: int = 1) -> StackSpec:
    kv = draw(st.integers(1, 2))
    heads = kv * draw(st.integers(1, 2))  # GQA when heads > kv
    dh = draw(st.sampled_from([8, 16]))
    d_model = draw(st.sampled_from([16, 32, 48])) * width_multiple
    return StackSpec(n_layers=draw(st.integers(1, 2)), d_model=d_model, n_heads=heads,
                     n_kv_heads=kv, head_dim=dh, d_ffn=draw(st.sampled_from([24, 40])), **kind)


@st.composite
def specs(draw: st.DrawFn) -> VanillaSpec | BlockSpec:
    vocab = draw(st.integers(11, 60))
    if draw(st.booleans()):
        kind = draw(st.sampled_from([NEOX, LLAMA]))
        return VanillaSpec(vocab_size=vocab, stack=draw(stacks(kind)))
    lb = draw(st.sampled_from([1, 2, 4]))
    return BlockSpec(vocab_size=vocab, block_length=lb, prefix_length=draw(st.integers(1, 3)),
                     block_decoder=draw(stacks(NEOX, width_multiple=4)),
                     token_decoder=draw(stacks(draw(st.sampled_from([NEOX, LLAMA])))))


def _assert_equal(rep) -> None:
    assert rep.mismatches == 0, "\n" + format_table(rep)


def test_op_names_drop_layer_indices() -> None:
    assert op_name("layers.3.attn.core") == "layers.attn.core"
    assert op_name("token_decoder.layers.0.mlp.up") == "token_decoder.layers.mlp.up"
    assert op_name("layers.12") == "layers"
    assert op_name("lm_head") == "lm_head"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), batch=st.integers(1, 3), prompt=st.integers(1, 9),
       generate=st.integers(1, 9), profile=st.sampled_from((*PROFILES, "official-eager")))
def test_counts_equal_cost_model_for_drawn_specs(spec, batch, prompt, generate,
                                                 profile) -> None:
    rep = compare(spec, batch, prompt, generate, profile, dtype="fp32", device="cpu")
    _assert_equal(rep)
    assert any(r.counted.get("flops") for r in rep.rows)  # something was counted


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", ["vanilla_31", "block_main_b4_5"])
def test_presets_on_meta_with_a_partial_last_block(name: str, profile: str) -> None:
    _assert_equal(compare(get_preset(name), 2, 37, 11, profile))  # bf16 on meta


@pytest.mark.parametrize(("name", "profile"), [("vanilla_31", "official-eager"),
                                             ("block_main_b4_5", "official")])
def test_official_profiles_compare_traffic_and_kernels(name: str, profile: str) -> None:
    """bf16 (the casts of the fp32 keys and scores are kernels) with activation bytes and
    kernels compared. Counted on the reference alone: the eager core runs HF 4.39 GPT-NeoX's
    eight kernels per layer and forward (q cast, zeros, baddbmm, causal mask, + padding mask,
    softmax, cast, AV); FA2 two (the key cast, the flash kernel)."""
    spec = get_preset(name)
    rep = compare(spec, 2, 9, 3, profile)
    _assert_equal(rep)
    assert all("kernels" in r.counted and "act_read_bytes" in r.counted
               for r in rep.rows if r.phase != "(request)")
    cores = {(r.phase, r.op): r.counted["kernels"] for r in rep.rows if r.op.endswith("core")}
    if isinstance(spec, VanillaSpec):
        assert cores[("prefill", "layers.attn.core")] == 8 * spec.stack.n_layers
    else:
        assert cores[("prefill", "block_decoder.layers.attn.core")] == (
            2 * spec.block_decoder.n_layers)
        assert cores[("token_decoder.prefix", "token_decoder.layers.attn.core")] == (
            8 * spec.token_decoder.n_layers)


def test_concat_token_cache_shorter_than_a_block() -> None:
    """With G < L_B a hf-legacy (concat) token-decoder cache only grows to P + G - 1 entries,
    and the cost model sizes it so; a static one is allocated P + L_B - 1 entries."""
    spec = get_preset("block_main_b4_5")
    td, bd = spec.token_decoder, spec.block_decoder
    per_entry = 2 * td.n_layers * td.kv_heads * td.dh * 2  # bf16
    blocks = 8 // spec.block_length  # n_p + n_g - 1 with n_g = 1
    block_bytes = blocks * 2 * bd.n_layers * bd.kv_heads * bd.dh * 2
    for profile, local in (("hf-legacy", spec.prefix_length + 2 - 1),
                           ("static", spec.prefix_length + spec.block_length - 1)):
        rep = compare(spec, 1, 8, 2, profile)
        _assert_equal(rep)
        kv_row = next(r for r in rep.rows if r.op == "(kv cache)")
        assert kv_row.counted["bytes"] == block_bytes + local * per_entry, profile


def test_fast_counter_equals_flop_counter_mode_per_module() -> None:
    """Same formulas as FlopCounterMode; ours attributes to the innermost module (exclusive)."""
    spec = BlockSpec(vocab_size=29, block_length=2, prefix_length=2,
                     block_decoder=StackSpec(n_layers=2, d_model=32, n_heads=2, d_ffn=40),
                     token_decoder=StackSpec(n_layers=2, d_model=16, n_heads=4, n_kv_heads=2,
                                             head_dim=8, d_ffn=24, **LLAMA))
    for profile in PROFILES:
        model = build_model(spec, seed=0)
        ids = torch.randint(0, 29, (2, 5))
        with counting_mode(), flop_counter() as counter:
            model.generate(ids, 5, mode=profile)
        inclusive = {k.split(".", 1)[1]: sum(v.values())
                     for k, v in counter.get_flop_counts().items() if "." in k}
        leaves = {k: v for k, v in inclusive.items()
                  if not any(o.startswith(k + ".") for o in inclusive)}
        ours = trace_request(build_model(spec, seed=0), ids, 5, profile).counts
        by_op: dict[str, int] = {}
        for (_, op), q in ours.items():
            by_op[op] = by_op.get(op, 0) + q["flops"]
        expected: dict[str, int] = {}
        for path, f in leaves.items():
            expected[op_name(path)] = expected.get(op_name(path), 0) + f
        assert {k: v for k, v in by_op.items() if v} == expected


@pytest.mark.parametrize("profile", PROFILES)
def test_meta_memos_change_no_count(profile: str) -> None:
    for name in ("vanilla_70", "block_main_b4_19"):
        model = build_model(get_preset(name), device="meta", dtype=torch.bfloat16)
        ids = torch.zeros(2, 9, dtype=torch.long, device="meta")
        with_memo = trace_request(model, ids, 7, profile, memo=True)
        without = trace_request(model, ids, 7, profile, memo=False)
        assert with_memo == without


def test_estimate_floats_agree_with_exact_counts() -> None:
    spec = get_preset("block_main_b4_1.2b")
    impl = get_implementation("hf-legacy", dtype="bf16")
    exact, weights, kv = predicted_counts(spec, impl, 8, 2048, 128)
    at_rest = predicted_counts(spec, impl, 8, 2048, 128, at_rest=True)[2]
    assert 0 < at_rest < kv  # hf-legacy: the torch.cat transient is part of the KV term
    est = estimate(spec, "h100-sxm-80gb", Workload(batch=8, prompt_tokens=2048,
                                                   generated_tokens=128), impl)
    rows = {(r.phase, r.name): r for r in est.ops}
    for key, q in exact.items():
        assert rows[key].flops == pytest.approx(q["flops"], rel=1e-12, abs=0)
        assert rows[key].kv_bytes == pytest.approx(q["kv_read_bytes"] + q["kv_write_bytes"],
                                                   rel=1e-12, abs=0)
        assert rows[key].activation_bytes == pytest.approx(
            q["act_read_bytes"] + q["act_write_bytes"], rel=1e-12, abs=0)
        assert rows[key].kernels == q["kernels"]
    assert est.weights_bytes == weights and est.kv_cache_bytes_per_sample == kv


def test_cli_count_last_line(capsys) -> None:
    assert cli_main(["validate", "count", "--model", "vanilla_31", "--prompt", "16",
                     "--generate", "4", "--batch", "2", "--implementation", "hf-legacy"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "count mismatches: 0"
    assert any(line.startswith("prefill") and "lm_head" in line for line in out)


def test_cli_count_models_list_quantised(capsys) -> None:
    """Comma-separated models; quantised weights and an int8 cache with activation bytes and
    kernels compared, zero mismatches; an empty name is refused."""
    assert cli_main(["validate", "count", "--model", "vanilla_31,block_main_b4_5", "--prompt",
                     "8", "--generate", "3", "--dtype", "fp32", "--weight-dtype", "w8a16",
                     "--kv-dtype", "int8"]) == 0
    out = capsys.readouterr().out
    assert "vanilla_31 " in out and "block_main_b4_5 " in out
    assert out.strip().endswith("count mismatches: 0")
    assert cli_main(["validate", "count", "--model", "vanilla_31,", "--prompt", "8",
                     "--generate", "3"]) == 2
    assert "--model" in capsys.readouterr().err


def test_cli_count_needs_lengths(capsys) -> None:
    assert cli_main(["validate", "count", "--model", "vanilla_31", "--prompt", "16"]) == 2
    assert "--generate" in capsys.readouterr().err


@pytest.mark.slow
def test_all_presets_prefill_heavy_setting() -> None:
    """Paper setting 2048/128 for all ten presets in every profile; the decode-heavy
    setting is run by `blockroof validate count --model all --paper-settings
    --implementation all` (validation/results/count/)."""
    t0 = time.perf_counter()
    for name in PRESET_NAMES:
        for profile in ALL_PROFILES:
            _assert_equal(compare(get_preset(name), 1, 2048, 128, profile))
    assert time.perf_counter() - t0 < 600
