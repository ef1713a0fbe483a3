"""Cost-model formulas: hand-checked numbers, closed forms vs loops, roofline properties."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from costmodel import Workload, estimate, formula, get_hardware, get_preset, sweep
from costmodel import symbols as sy
from costmodel.api import structure_key, symbol_values
from costmodel.implementation import get_implementation
from costmodel.loading import load_model
from costmodel.metrics import ARGS, formulas
from costmodel.phases import block_phases, vanilla_phases
from costmodel.roofline import forward_time
from costmodel.sums import sum_linear, sum_max_linear

PROFILES = ("static", "hf-legacy")
MODELS = ("vanilla_70", "block_main_b4_19")
H100 = "h100-sxm-80gb"
ROOT = Path(__file__).resolve().parent.parent


def evaluate(expr: sp.Expr, values: dict) -> float:
    return float(sp.lambdify(ARGS + (sy.c, sy.j, sy.k), expr, "numpy")(
        *[values.get(a, 0.0) for a in ARGS + (sy.c, sy.j, sy.k)]))


def values_for(model, workload, profile="static", hardware=H100, batch=None):
    spec, impl = get_preset(model), get_implementation(profile)
    return symbol_values(spec, get_hardware(hardware), impl, workload,
                   batch if batch is not None else workload.batch)


# --- hand-checked numbers ------------------------------------------------------------------------

def test_vanilla_410_kv_cache_is_98304_bytes_per_token_bf16():
    # docs/model.md 2.3: 2 * N * D * s = 2 * 24 * 1024 * 2 = 98,304 bytes per token.
    est = estimate("vanilla_410", H100, Workload(batch=1, prompt_tokens=1000, generated_tokens=1))
    assert est.kv_cache_bytes_per_sample == 98_304 * 1000  # S + G - 1 entries


def test_block_1p4b_kv_cache_per_sample():
    # docs/model.md 2.3 worked numbers: 96 KiB per block, L = 2176 -> 544 blocks; local cache 5.
    est = estimate("block_main_b4_1.2b", H100, Workload(batch=1, prompt_tokens=2048,
                                                         generated_tokens=128))
    per_entry = 2 * 12 * 2048 * 2
    assert est.kv_cache_bytes_per_sample == per_entry * (512 + 32 - 1) + per_entry * 5
    assert per_entry * 5 / 2**20 == pytest.approx(0.47, abs=0.01)


def test_weights_bytes_equal_parameters_times_two_bf16():
    for name in ("vanilla_410", "block_main_b4_800"):
        est = estimate(name, H100, Workload())
        assert est.weights_bytes == 2 * get_preset(name).params_total
    legacy = estimate("block_main_b4_800", H100, Workload(), "hf-legacy")
    spec = get_preset("block_main_b4_800")
    assert legacy.weights_bytes == 2 * (spec.params_total + spec.params_unused_embed_in)


def test_decode_step_flops_match_spec_4_3():
    # docs/model.md 4.3 vanilla decode step at context c: 24 N D^2 + 4 N D (c+1) + 2 D V (matmuls,
    # without biases' adds); our count is exact for the same matmuls.
    spec = get_preset("vanilla_410")
    N, D, V = 24, 1024, 50304
    c = 777
    f = formulas(structure_key(spec, get_implementation("static")))
    rows = [r for r in f.rows if r.phase == "decode"]
    vals = values_for("vanilla_410", Workload(batch=1, prompt_tokens=c, generated_tokens=2))
    flops = sum(evaluate(r.quantities["flops"], vals) for r in rows)  # one step, at c = S
    assert flops == 24 * N * D**2 + 4 * N * D * (c + 1) + 2 * D * V


def test_prefill_lm_head_rows_depend_on_profile():
    # docs/model.md 2.1: HF 4.39 computes logits for every prompt position.
    w = Workload(batch=2, prompt_tokens=512, generated_tokens=1)
    ops = {p: {(r.phase, r.name): r for r in estimate("vanilla_70", H100, w, p).ops}
           for p in PROFILES}
    assert ops["static"][("prefill", "lm_head")].flops == 2 * 2 * 512 * 50304
    assert ops["hf-legacy"][("prefill", "lm_head")].flops == 2 * 2 * 512 * 512 * 50304


def test_token_decoder_forwards_per_block():
    # docs/model.md 2.2: L_g token-decoder forwards, LM head on L_B rows per block.
    w = Workload(batch=1, prompt_tokens=128, generated_tokens=64)
    est = estimate("block_main_b4_5", H100, w)
    head = sum(r.flops for r in est.ops if r.name == "token_decoder.lm_head")
    assert head == 64 * 2 * 256 * 50304
    emb = [r for r in est.ops if r.name == "embedder"]
    # prompt blocks + one new block per generated block but the last
    assert sum(r.weight_bytes for r in emb) == (32 + 16 - 1) * 256 * 2


# --- closed forms vs explicit loops --------------------------------------------------------------

_PHASE_FNS: dict = {}


def _phase_fns(key):
    """Per-forward roofline time of every phase, compiled once per structure."""
    if key not in _PHASE_FNS:
        phases = (vanilla_phases(key.stacks[0], key.impl) if key.kind == "vanilla"
                  else block_phases(*key.stacks, key.impl))
        _PHASE_FNS[key] = {p.name: sp.lambdify(ARGS + (p.index or sy.c,), forward_time(p.ops),
                                               "numpy") for p in phases}
    return _PHASE_FNS[key]


@settings(max_examples=25, deadline=None)
@given(S=st.integers(1, 300), G=st.integers(1, 300), B=st.integers(1, 64),
       profile=st.sampled_from(PROFILES), overlap=st.sampled_from([1.0, 0.0, 0.37]))
def test_vanilla_request_time_equals_loop(S, G, B, profile, overlap):
    spec, impl = get_preset("vanilla_70"), get_implementation(profile)
    key = structure_key(spec, impl)
    fns = _phase_fns(key)
    vals = values_for("vanilla_70", Workload(batch=B, prompt_tokens=S, generated_tokens=G),
                      profile)
    vals[sy.t_kernel], vals[sy.t_forward], vals[sy.eta_ov] = 3e-6, 1e-5, overlap
    args = [np.float64(vals[a]) for a in ARGS]
    loop = float(fns["prefill"](*args, 0))
    loop += sum(float(fns["decode"](*args, c)) for c in range(S, S + G - 1))
    closed = evaluate(formulas(key).metrics["request_time_s"], vals)
    assert closed == pytest.approx(loop, rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(S=st.integers(1, 200), G=st.integers(1, 200), B=st.integers(1, 64),
       L_B=st.sampled_from([1, 2, 4, 8]), profile=st.sampled_from(PROFILES),
       overlap=st.sampled_from([1.0, 0.0, 0.37]))
def test_block_request_time_equals_loop(S, G, B, L_B, profile, overlap):
    from costmodel import with_block_length

    spec = with_block_length(get_preset("block_main_b4_19"), L_B)
    impl = get_implementation(profile)
    key = structure_key(spec, impl)
    w = Workload(batch=B, prompt_tokens=S, generated_tokens=G)
    vals = symbol_values(spec, get_hardware(H100), impl, w, B)
    vals[sy.t_kernel], vals[sy.t_forward], vals[sy.eta_ov] = 3e-6, 1e-5, overlap
    args = [np.float64(vals[a]) for a in ARGS]
    n_p, n_g = math.ceil(S / L_B), math.ceil(G / L_B)
    fns = _phase_fns(key)
    loop = float(fns["prefill"](*args, 0))
    for blk in range(n_g):
        g = L_B if blk < n_g - 1 else G - (n_g - 1) * L_B
        if blk >= 1:
            loop += float(fns["block_decoder.step"](*args, blk))
        loop += float(fns["token_decoder.prefix"](*args, 0))
        loop += sum(float(fns["token_decoder.step"](*args, kk)) for kk in range(2, g + 1))
    closed = evaluate(formulas(key).metrics["request_time_s"], vals)
    assert n_p >= 1
    assert closed == pytest.approx(loop, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(a=st.floats(-10, 10), b=st.floats(-100, 100), c=st.floats(-10, 10),
       d=st.floats(-100, 100), lo=st.integers(0, 50), n=st.integers(0, 60))
def test_sum_max_linear_matches_loop(a, b, c, d, lo, n):
    fn = _sum_max_fn()
    hi = lo + n - 1
    want = sum(max(a * x + b, c * x + d) for x in range(lo, hi + 1))
    with np.errstate(all="ignore"):
        got = float(fn(*map(np.float64, (a, b, c, d, lo, hi))))
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


_CACHE: dict = {}


def _sum_max_fn():
    if "f" not in _CACHE:
        i = sp.Symbol("i", integer=True)
        a, b, c, d, lo, hi = sp.symbols("a b c d lo hi")
        _CACHE["f"] = sp.lambdify((a, b, c, d, lo, hi),
                                  sum_max_linear(a * i + b, c * i + d, i, lo, hi), "numpy")
    return _CACHE["f"]


def test_sum_linear_is_arithmetic_series():
    i, x = sp.symbols("i x")
    assert sp.simplify(sum_linear(3 * i + x, i, 1, 10) - (165 + 10 * x)) == 0
    with pytest.raises(ValueError, match="not linear"):
        sum_linear(i**2, i, 1, 3)


# --- roofline properties -------------------------------------------------------------------------

workloads = st.builds(Workload, batch=st.integers(1, 512), prompt_tokens=st.integers(1, 8192),
                      generated_tokens=st.integers(1, 4096))


@settings(max_examples=30, deadline=None)
@given(w=workloads, model=st.sampled_from(MODELS), profile=st.sampled_from(PROFILES),
       which=st.sampled_from(["batch", "prompt_tokens", "generated_tokens"]),
       extra=st.integers(1, 1000))
def test_request_time_never_decreases(w, model, profile, which, extra):
    t0 = estimate(model, H100, w, profile).request_time_s
    bigger = Workload.model_validate(w.model_dump() | {which: getattr(w, which) + extra})
    assert estimate(model, H100, bigger, profile).request_time_s >= t0 * (1 - 1e-12)


@settings(max_examples=20, deadline=None)
@given(w=workloads, profile=st.sampled_from(PROFILES), scale=st.floats(1.01, 100))
def test_time_never_increases_with_faster_hardware(w, profile, scale):
    hw = get_hardware(H100)
    faster_compute = hw.model_validate(hw.model_dump() | {"peak": hw.peak.model_dump() | {
        "bf16_TFLOPs": hw.peak.bf16_TFLOPs * scale}})
    faster_memory = hw.model_validate(hw.model_dump() | {
        "memory_bandwidth_GBps": hw.memory_bandwidth_GBps * scale})
    for model in MODELS:
        t = estimate(model, hw, w, profile).request_time_s
        assert estimate(model, faster_compute, w, profile).request_time_s <= t * (1 + 1e-12)
        assert estimate(model, faster_memory, w, profile).request_time_s <= t * (1 + 1e-12)


def test_more_layers_never_faster():
    w = Workload(batch=8, prompt_tokens=512, generated_tokens=256)
    base = get_preset("vanilla_160")
    deeper = base.model_validate(base.model_dump() | {
        "stack": base.stack.model_dump() | {"n_layers": 13}})
    assert estimate(deeper, H100, w).request_time_s > estimate(base, H100, w).request_time_s


@settings(max_examples=20, deadline=None)
@given(w=workloads, model=st.sampled_from(MODELS), profile=st.sampled_from(PROFILES))
def test_roofline_time_bounds(w, model, profile):
    est = estimate(model, H100, w, profile)
    for r in est.ops:
        # per forward max(T_math, T_mem), summed: at least each sum, at most their total
        assert r.time_s >= max(r.t_math_s, r.t_mem_s) * (1 - 1e-9)
        assert r.time_s <= (r.t_math_s + r.t_mem_s) * (1 + 1e-9) + 1e-15
        if r.phase == "prefill":  # one forward: equals one of its terms
            assert r.time_s == pytest.approx(max(r.t_math_s, r.t_mem_s), rel=1e-12)
    # no overlap at all: every op takes T_math + T_mem in every forward
    serial = estimate(model, get_hardware(H100).with_efficiency(overlap=0.0), w, profile)
    for r in serial.ops:
        assert r.time_s == pytest.approx(r.t_math_s + r.t_mem_s, rel=1e-12, abs=1e-18)
    assert serial.request_time_s >= est.request_time_s


@settings(max_examples=20, deadline=None)
@given(S=st.integers(1, 4000), G=st.integers(1, 4000), model=st.sampled_from(MODELS))
def test_kv_memory_linear_in_context(S, G, model):
    def kv(s, g):
        return estimate(model, H100, Workload(prompt_tokens=s, generated_tokens=g)) \
            .kv_cache_bytes_per_sample

    L_B = getattr(get_preset(model), "block_length", 1)
    step = 4 * L_B  # keep block counts whole
    a, b, c = kv(S * step, G * step), kv(2 * S * step, G * step), kv(3 * S * step, G * step)
    assert b - a == pytest.approx(c - b, rel=1e-12)
    assert b > a


# every (model kind, profile) structure, each at 3 drawn workloads (a sympy evaluation at 30
# digits costs about a second per example)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("profile", PROFILES)
@settings(max_examples=3, deadline=None)
@given(w=workloads)
def test_lambdified_equals_sympy_evaluation(w, model, profile):
    spec, impl = get_preset(model), get_implementation(profile)
    f = formulas(structure_key(spec, impl))
    vals = values_for(model, w, profile)
    metrics, _ = f.evaluate_all(vals)
    subs = {k: sp.Float(v, 30) for k, v in vals.items()}
    for name in ("ttft_s", "memory_bytes_per_sample", "flops_total", "kv_bytes_total"):
        exact = float(f.metrics[name].subs(subs).evalf(30))
        assert metrics[name] == pytest.approx(exact, rel=1e-9)


def test_sweep_equals_estimate():
    df = sweep(list(MODELS) + ["block_main_b4_5"], [H100, "a100-sxm-80gb"], batch=[1, 7, 64],
               prompt_tokens=[1, 100, 2048], generated_tokens=[1, 33, 128],
               implementation="hf-legacy")
    assert len(df) == 3 * 2 * 27
    for row in df.sample(20, random_state=0).itertuples():
        est = estimate(row.model, row.hardware, Workload(
            batch=int(row.batch), prompt_tokens=int(row.prompt_tokens),
            generated_tokens=int(row.generated_tokens)), "hf-legacy")
        assert row.throughput_tokens_per_s == pytest.approx(est.throughput_tokens_per_s,
                                                            rel=1e-12)
        assert row.max_batch == est.max_batch


def test_sweep_max_batch_and_block_length():
    df = sweep(["block_main_b4_85", "vanilla_160"], H100, batch="max", prompt_tokens=[2048],
               generated_tokens=[128], block_length=[1, 2, 4, 8])
    blocks = df[df.kind == "block"]
    assert sorted(blocks.block_length) == [1, 2, 4, 8]
    assert (blocks.batch == blocks.max_batch).all()
    # longer blocks: smaller KV cache per sample, larger batch, more throughput (paper Fig. 4a)
    thr = blocks.sort_values("block_length").throughput_tokens_per_s.to_numpy()
    assert np.all(np.diff(thr) > 0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"batch": [0]}, r"batch: every value must be a whole number from 1 to 9.01e\+15, got 0"),
    ({"prompt_tokens": [1.5]}, "prompt_tokens"),
    ({"batch": "most"}, "batch: expected"),
    ({"metrics": ["speed"]}, "metrics: unknown"),
    ({"generated_tokens": []}, "generated_tokens: needs at least one value"),
])
def test_sweep_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sweep("vanilla_70", H100, **kwargs)


def test_estimate_bad_input():
    with pytest.raises(ValueError, match="prompt_tokens"):
        Workload(prompt_tokens=0)
    with pytest.raises(ValueError, match="implementation: unknown profile"):
        estimate("vanilla_70", H100, Workload(), "eager")
    with pytest.raises(ValueError, match="hardware: unknown id"):
        estimate("vanilla_70", "h1000", Workload())


def test_max_batch_fills_memory():
    w = Workload(batch="max", prompt_tokens=2048, generated_tokens=128)
    est = estimate("vanilla_410", H100, w)
    cap = get_hardware(H100).capacity_bytes()
    assert est.batch == est.max_batch
    assert est.memory_bytes_total <= cap < est.weights_bytes + (est.batch + 1) * \
        est.memory_bytes_per_sample


# --- docs/model.md 4.1 relative factors as limits ------------------------------------------------------

def _sum_rows(est, prefix, quantity, phases=None):
    return sum(getattr(r, quantity) for r in est.ops
               if r.name.startswith(prefix) and (phases is None or r.phase in phases))


def test_relative_factors_of_spec_4_1():
    """Block decoder / token decoder vs a vanilla stack of the same N and D (docs/model.md 4.1)."""
    N, D, L_B = 12, 768, 4
    vanilla = get_preset("vanilla_160")  # N=12, D=768
    block = get_preset("block_main_b4_85").model_validate(
        get_preset("block_main_b4_85").model_dump() | {
            "block_decoder": vanilla.stack.model_dump(),
            "token_decoder": vanilla.stack.model_dump(), "prefix_length": 1})
    G = 200_000  # decode of a long context, no prompt: limits as L -> infinity
    w = Workload(batch=1, prompt_tokens=L_B, generated_tokens=G)
    ev, eb = estimate(vanilla, H100, w), estimate(block, H100, w)
    decode_v = ["decode"]
    v_kv = _sum_rows(ev, "layers.attn", "kv_bytes", decode_v)
    bd_kv = _sum_rows(eb, "block_decoder.layers.attn", "kv_bytes")
    td_kv = _sum_rows(eb, "token_decoder.layers.attn", "kv_bytes")
    assert bd_kv / v_kv == pytest.approx(1 / L_B**2, rel=1e-3)  # KV IO: 1/L_B^2
    assert td_kv / v_kv < 1e-3  # KV IO: L_B/L ~ 0
    v_attn = _sum_rows(ev, "layers.attn.core", "flops", decode_v)
    assert _sum_rows(eb, "block_decoder.layers.attn.core", "flops") / v_attn == \
        pytest.approx(1 / L_B**2, rel=1e-3)  # attention FLOPs: 1/L_B^2
    v_w = _sum_rows(ev, "layers.", "weight_bytes", decode_v)
    bd_w = _sum_rows(eb, "block_decoder.layers.", "weight_bytes")
    td_w = _sum_rows(eb, "token_decoder.layers.", "weight_bytes")
    assert bd_w / v_w == pytest.approx(1 / L_B, rel=1e-3)  # parameter IO: 1/L_B
    assert td_w / v_w == pytest.approx(1, rel=1e-3)  # parameter IO: 1
    lin = ("qkv", "dense", "mlp.up", "mlp.down")
    v_lin = sum(_sum_rows(ev, f"layers.attn.{o}" if o in ("qkv", "dense") else f"layers.{o}",
                          "flops", decode_v) for o in lin)
    bd_lin = sum(_sum_rows(eb, f"block_decoder.layers.attn.{o}" if o in ("qkv", "dense")
                           else f"block_decoder.layers.{o}", "flops") for o in lin)
    td_lin = sum(_sum_rows(eb, f"token_decoder.layers.attn.{o}" if o in ("qkv", "dense")
                           else f"token_decoder.layers.{o}", "flops") for o in lin)
    assert bd_lin / v_lin == pytest.approx(1 / L_B, rel=1e-3)  # linear FLOPs: 1/L_B
    # token decoder: (P + L_B - 1) / L_B positions per token; the paper's "1" ignores the prefix
    assert td_lin / v_lin == pytest.approx((1 + L_B - 1) / L_B, rel=1e-3)
    # KV memory: 1/L_B (block decoder), ~0 (token decoder)
    kv_v = ev.kv_cache_bytes_per_sample
    kv_td = 2 * N * D * 2 * (1 + L_B - 1)
    assert (eb.kv_cache_bytes_per_sample - kv_td) / kv_v == pytest.approx(1 / L_B, rel=1e-3)


def test_formula_api():
    f = formula("kv_cache_bytes_per_sample", "vanilla_410")
    assert f.evaluate("vanilla_410", H100, Workload(prompt_tokens=10, generated_tokens=1)) == \
        98_304 * 10
    assert "s_{kv}" in f.latex and "N" in f.symbols
    g = formula("decode/layers.attn.core/flops", "vanilla_70")
    assert g.expr.has(sy.B)
    with pytest.raises(ValueError, match="unknown formula"):
        formula("nope")


def test_inverse_questions():
    est = estimate("vanilla_410", H100, Workload(batch=1, prompt_tokens=1, generated_tokens=2))
    # a decode step reads all layer weights, the LM head and one embedding row (bf16), and
    # moves 98,304 KV bytes per entry: c + 1 entries read, 1 entry written
    spec = get_preset("vanilla_410")
    weights_read = 2 * (spec.params_non_embedding + 50304 * 1024 + 1024)
    assert est.kv_overtakes_weights_context == pytest.approx(weights_read / 98_304 - 2,
                                                             rel=1e-12)


def _decode_terms(model, batch, prompt=1):
    e = estimate(model, H100, Workload(batch=batch, prompt_tokens=prompt, generated_tokens=2))
    rows = [r for r in e.ops if r.phase == "decode"]
    return sum(r.t_math_s for r in rows), sum(r.t_mem_s for r in rows)


def test_compute_bound_batch_is_where_math_overtakes_memory():
    # Llama-2-7B (D 4096): the decode step's activation traffic per sequence is small next to
    # its FLOPs per sequence / ridge point, so a finite batch makes it compute-bound
    model = str(ROOT / "examples" / "configs" / "llama-2-7b.json")
    spec = load_model(model)
    b = estimate(spec, H100, Workload(batch=1, prompt_tokens=1,
                                      generated_tokens=2)).compute_bound_batch
    assert get_hardware(H100).ridge_point() < b < 1e5
    # exactly at the crossing: one batch below is memory-bound, the next one compute-bound
    t_math, t_mem = _decode_terms(spec, math.ceil(b))
    assert t_math >= t_mem
    t_math, t_mem = _decode_terms(spec, math.floor(b))
    assert t_math < t_mem or math.floor(b) == b


def test_compute_bound_batch_infinite_when_traffic_grows_as_fast():
    # vanilla_410 in bf16: the eager per-sequence activation traffic of a decode step (2.9 MB)
    # exceeds its FLOPs per sequence / ridge point, so no batch is compute-bound
    assert estimate("vanilla_410", H100, Workload(batch=1, prompt_tokens=1,
                                                  generated_tokens=2)).compute_bound_batch \
        == math.inf
    t_math, t_mem = _decode_terms("vanilla_410", 10**6)
    assert t_math < t_mem


def test_max_batch_for_a_memory_budget():
    from costmodel import max_batch

    w = Workload(prompt_tokens=2048, generated_tokens=128)
    est = estimate("vanilla_410", H100, w)
    budget = est.weights_bytes + 10.5 * est.memory_bytes_per_sample
    assert max_batch("vanilla_410", budget, w) == 10
    assert max_batch("vanilla_410", est.weights_bytes / 2, w) == 0
    with pytest.raises(ValueError, match="memory_bytes: must be > 0"):
        max_batch("vanilla_410", 0, w)
