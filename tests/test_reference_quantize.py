"""Quantised reference: packed int8/int4 linears, int8 KV cache, exact counts, quality.

docs/precision.md; the cost-model side is tests/test_precision.py.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import sympy as sp
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from costmodel import symbols as sy
from costmodel.ops import linear_weight_bytes
from costmodel.precision import precision_values
from costmodel.spec import BlockSpec, VanillaSpec
from reference import build_model
from reference.kv_cache import KVCache
from reference.quantize import Int4Linear, Int8Linear, quantize_kv_cache, quantize_model
from validation.count import compare

sys.path.insert(0, str(Path(__file__).parent))
from test_reference_training import STACK, TEXT, train  # noqa: E402


def _formula_bytes(d_in: int, d_out: int, weight_dtype: str) -> float:
    v = precision_values(weight_dtype, "fp32", "fp32")
    expr = linear_weight_bytes(sp.Integer(d_in), sp.Integer(d_out), bias=True)
    return float(expr.subs({getattr(sy, k): val for k, val in v.items()}))


@pytest.mark.parametrize("fmt", ["int8", "int4-g32"])
def test_packed_linear_equals_its_dequantised_weight(fmt: str) -> None:
    torch.manual_seed(0)
    dense = nn.Linear(128, 48)
    x = torch.randn(5, 3, 128)
    if fmt == "int8":
        q = Int8Linear(dense)
        w = q.weight_q.float() * q.scales[:, None]
        step = q.scales[:, None]
    else:
        q = Int4Linear(dense, 32)
        sz = q.scales_and_zeros  # [groups, out, 2]
        scale = sz[..., 0].T.repeat_interleave(32, dim=1)  # [out, in]
        zero = sz[..., 1].T.repeat_interleave(32, dim=1)
        # unpack by running the kernel on the identity: column j of W^T
        w = q(torch.eye(128)).T - dense.bias.detach()[:, None]
        qv = torch.round((w - zero) / scale + 8)
        assert torch.allclose(w, (qv - 8) * scale + zero, atol=1e-5)
        assert qv.min() >= 0 and qv.max() <= 15
        step = scale
    # the weight is within half a quantisation step of the original
    assert ((w - dense.weight.detach()).abs() <= step / 2 + 1e-6).all()
    ref = x @ w.T + dense.bias.detach()
    assert torch.allclose(q(x), ref, atol=1e-4)
    stored = sum(t.numel() * t.element_size() for t in q.stored_weights())
    assert stored == _formula_bytes(128, 48, fmt)


def test_flop_counter_mode_misses_the_packed_int8_matmul() -> None:
    """Why validation.tracing has its own rule (QUANTIZED_MATMULS): FlopCounterMode counts 0."""
    q = Int8Linear(nn.Linear(64, 32))
    with FlopCounterMode(display=False) as fc:
        q(torch.randn(4, 64))
    assert fc.get_total_flops() == 0


def test_int8_kv_cache_stores_scales_and_round_trips() -> None:
    torch.manual_seed(0)
    cache = KVCache()
    cache.kv_dtype = "int8"
    b, k_heads, t_max, dh = 2, 3, 10, 16
    cache.setup("static", b, t_max, k_heads, dh, torch.device("cpu"), torch.float32)
    assert cache.nbytes == 2 * b * k_heads * t_max * (dh + 4)  # int8 values + an fp32 scale
    k, v = torch.randn(b, k_heads, 4, dh), torch.randn(b, k_heads, 4, dh)
    k_all, v_all = cache.update(k, v, 0)
    assert k_all.dtype == torch.float32 and k_all.shape == (b, k_heads, 4, dh)
    for x, back in ((k, k_all), (v, v_all)):
        half_step = x.abs().amax(-1, keepdim=True) / 127 / 2
        assert ((back - x).abs() <= half_step * 1.0001).all()
        assert not torch.equal(back, x)


CASES = [(name, profile, w, kv) for name in ("vanilla_70", "block_main_b4_19")
         for profile in ("static", "hf-legacy")
         for w, kv in (("w8a16", None), (None, "int8"), ("int4-g32", "int8"))
         # the slowest case on meta (~30 s) is left to `blockroof validate count`
         if (name, profile, w) != ("block_main_b4_19", "hf-legacy", "w8a16")]


@pytest.mark.parametrize("name, profile, weight_dtype, kv_dtype", CASES)
def test_quantised_counts_equal_cost_model(name, profile, weight_dtype, kv_dtype) -> None:
    from costmodel import get_preset

    spec = get_preset(name)
    rep = compare(spec, 3, 21, 6, profile, "fp32", weight_dtype=weight_dtype, kv_dtype=kv_dtype)
    assert rep.mismatches == 0, [r for r in rep.rows if not r.ok]
    # activation bytes and kernels are compared too, not only FLOPs, weight and KV bytes
    assert all({"act_read_bytes", "act_write_bytes", "kernels"} <= set(r.counted)
               for r in rep.rows if r.phase != "(request)")
    rows = {r.op: r.counted for r in rep.rows}
    dense_params = 4 * spec.params_total  # fp32
    if weight_dtype:  # the quantised reference really is smaller (embeddings stay dense)
        assert rows["(parameters)"]["bytes"] < 0.8 * dense_params
    else:
        assert rows["(parameters)"]["bytes"] == dense_params


def test_quantised_modules_are_counted_as_the_fused_kernels() -> None:
    """A quantised linear is one kernel reading its input and writing its output; an int8
    cache update one kernel per tensor reading the new k and v; the dequantised copies eager
    attention reads are KV, so its activation bytes and kernels equal the dense cache's
    (docs/precision.md 3; figures by hand, not from the cost model)."""
    from costmodel import get_preset

    spec = get_preset("vanilla_70")
    st = spec.stack
    b, s, n, fp32 = 2, 5, st.n_layers, 4
    rep = compare(spec, b, s, 3, "hf-legacy", "fp32", weight_dtype="w8a16", kv_dtype="int8")
    assert rep.mismatches == 0
    got = {(r.phase, r.op): r.counted for r in rep.rows}
    qkv, cache = got[("prefill", "layers.attn.qkv")], got[("prefill", "layers.attn.kv_cache")]
    assert qkv["kernels"] == n  # not the packed matmul, bias add and input copy
    assert qkv["act_read_bytes"] == n * b * s * st.d_model * fp32
    assert qkv["act_write_bytes"] == n * b * s * (st.n_heads + 2 * st.kv_heads) * st.dh * fp32
    assert cache["kernels"] == 2 * n  # not abs, amax, clamp, div, round, ... per tensor
    assert cache["act_read_bytes"] == n * 2 * b * s * st.kv_heads * st.dh * fp32
    assert cache["act_write_bytes"] == 0
    dense = {(r.phase, r.op): r.counted for r in
             compare(spec, b, s, 3, "hf-legacy", "fp32").rows}
    for phase in ("prefill", "decode"):
        core, dense_core = got[(phase, "layers.attn.core")], dense[(phase, "layers.attn.core")]
        for q in ("act_read_bytes", "act_write_bytes", "kernels"):
            assert core[q] == dense_core[q], (phase, q)


def _tiny(kind: str) -> nn.Module:
    torch.manual_seed(0)
    spec = (VanillaSpec(vocab_size=256, stack=STACK) if kind == "vanilla" else
            BlockSpec(vocab_size=256, block_length=4, prefix_length=2, block_decoder=STACK,
                      token_decoder=STACK))
    model = build_model(spec, seed=0)
    train(model, steps=150, seq_len=64, batch=16, lr=3e-3)
    return model


@pytest.mark.parametrize("kind", ["vanilla", "block"])
def test_quality_of_a_trained_tiny_model(kind: str) -> None:
    """Greedy tokens unchanged and logits close after quantising a trained model.

    Measured (150 training steps, 2 prompts x 48 tokens, logits spanning about +-7): every
    token identical; max |logit difference| int8 weights 0.02, int8 KV 0.01-0.04, both 0.02-0.06,
    int4-g32 weights 0.21-0.25. Tolerances below: 0.15 for int8, 0.6 for int4-g32.
    """
    torch.set_num_threads(1)
    model = _tiny(kind)
    prompt = torch.tensor([list(TEXT[100:132]), list(TEXT[500:532])])
    ref = model.generate(prompt, 48, return_logits=True)
    for weights, kv, tol in (("int8", None, 0.15), (None, "int8", 0.15), ("int8", "int8", 0.15),
                             ("int4-g32", None, 0.6)):
        q = copy.deepcopy(model)
        if weights:
            quantize_model(q, weights)
        if kv:
            quantize_kv_cache(q, kv)
        out = q.generate(prompt, 48, return_logits=True)
        same = (out.tokens == ref.tokens).float().mean().item()
        assert same >= 0.9, (weights, kv, same)
        rows = [int((r != o).nonzero()[0]) if (r != o).any() else 48
                for r, o in zip(ref.tokens, out.tokens, strict=True)]
        diff = max((out.logits[i, : n + 1] - ref.logits[i, : n + 1]).abs().max().item()
                   for i, n in enumerate(rows))
        assert 0 < diff < tol, (weights, kv, diff)


def test_quantised_suite_points_and_predictions() -> None:
    """cpu-quant points carry their formats into ids, records and predictions; dense ids are
    those of before; the vectorised Predictor binds the dequantisation rate like estimate."""
    from costmodel import get_hardware
    from validation.predict import Predictor, Rates, predict_record
    from validation.suites import Point, get_suite

    dense = Point("vanilla_70", "decode_step", 8, 1024)
    assert "weight_dtype" not in dense.fields()
    q = Point("vanilla_70", "decode_step", 8, 1024, weight_dtype="int4-g32", kv_dtype="int8")
    assert q.fields()["weight_dtype"] == "int4-g32"
    suite = get_suite("cpu-quant")
    assert {(p.weight_dtype, p.kv_dtype) for p in suite.points} == {
        (None, None), ("int8", None), ("int4-g32", None), (None, "int8")}
    hw = get_hardware("a100-sxm-80gb")
    base = {"phase": "decode_step", "spec": get_preset_dump("vanilla_70"),
            "implementation": "static", "dtype": "bf16", "batch": 8, "prompt_tokens": 1024,
            "generated_tokens": 1}
    recs = [base, base | {"weight_dtype": "int4-g32", "kv_dtype": "int8"}]
    single = [predict_record(r, hw) for r in recs]
    assert single[1] < single[0]  # fewer bytes on a memory-bound step
    vec = Predictor(recs, hw).predict(Rates.of(hw, "bf16"))
    assert vec.tolist() == pytest.approx(single, rel=1e-12)


def get_preset_dump(name: str) -> dict:
    from costmodel import get_preset

    return get_preset(name).model_dump()
