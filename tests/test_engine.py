"""The cost model as an engine (issue 18, docs/performance.md): the fast `estimate`, `sweep`
and plan paths give exactly the numbers of the straightforward implementations they replaced.

`_estimate_before` is `estimate` as it was before issue 18 (numpy-compiled formulas evaluated
at B = 1 and at the batch, every result validated by pydantic); it is the independent reference
the fast path is compared with, field by field, with ==."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from costmodel import Workload, estimate, get_hardware, get_preset, sweep
from costmodel import symbols as sy
from costmodel.api import (
    Estimate,
    OpRow,
    _bound,
    _op_row,
    check_precision,
    structure_key,
    symbol_values,
)
from costmodel.implementation import get_implementation
from costmodel.metrics import METRICS, ROW_FIELDS, formulas
from costmodel.parallel import Parallelism, get_parallelism

# few structures: each one's formulas take seconds to build
MODELS = ("vanilla_70", "block_main_b4_19")
HARDWARE = ("h100-sxm-80gb", "a100-sxm-40gb", "l4", "v100-sxm2-16gb")
PROFILES = ("static", "official")
LAYOUTS = (Parallelism(), Parallelism(tp=2), Parallelism(pp=2))


def _estimate_before(model, hardware, workload, implementation, parallelism=None) -> Estimate:
    spec, hw = get_preset(model), get_hardware(hardware)
    impl, par = get_implementation(implementation), get_parallelism(parallelism)
    check_precision(spec, impl)
    f = formulas(structure_key(spec, impl, par))
    vals = symbol_values(spec, hw, impl, workload, 1.0, par)
    pi, pi_v = vals[sy.pi], vals[sy.pi_v]
    metrics, rows = f.evaluate_all(vals)
    max_batch = int(metrics["max_batch"])
    batch = max(max_batch, 1) if workload.batch == "max" else workload.batch
    if batch != 1:
        metrics, rows = f.evaluate_all(symbol_values(spec, hw, impl, workload, batch, par))
    ops = []
    for (phase, op), vals in zip(f.row_labels, rows, strict=True):
        v = dict(zip(ROW_FIELDS, map(float, vals), strict=True))
        ops.append(OpRow(
            phase=phase, name=op, flops=v["flops"], useful_flops=v["useful_flops"],
            weight_bytes=v["weight_bytes"],
            activation_bytes=v["act_read_bytes"] + v["act_write_bytes"],
            kv_bytes=v["kv_read_bytes"] + v["kv_write_bytes"], kernels=v["kernels"],
            time_flops=v["t_math_s"] * pi - v["dequant_flops"] * pi / pi_v,
            dequant_flops=v["dequant_flops"],
            t_math_s=v["t_math_s"], t_mem_s=v["t_mem_s"], time_s=v["time_s"],
            bound=_bound(v["t_math_s"], v["t_mem_s"], v["time_s"], v["comm_time"]),
            collective_bytes=v["comm_bytes"], collective_time_s=v["comm_time"]))
    step_tokens = spec.block_length if spec.kind == "block" else 1
    return Estimate(
        model=spec.name, kind=spec.kind, hardware=hw.id, implementation=impl.name,
        weight_dtype=impl.weight_dtype, compute_dtype=impl.compute_dtype, kv_dtype=impl.kv_dtype,
        batch=batch, prompt_tokens=workload.prompt_tokens,
        generated_tokens=workload.generated_tokens,
        **{m: metrics[m] for m in METRICS if m != "max_batch"},
        max_batch=max_batch, fits=batch <= max_batch, ops=ops,
        decode_step_tokens=step_tokens,
        decode_time_per_token_s=metrics["decode_step_time_s"] / step_tokens,
        tp=par.tp, pp=par.pp, gpus=par.gpus_per_replica)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _assert_identical(new: Estimate, old: Estimate) -> None:
    dn, do = new.model_dump(), old.model_dump()
    assert list(dn) == list(do)
    for k in dn:
        if k == "ops":
            assert len(dn[k]) == len(do[k])
            for rn, ro in zip(dn[k], do[k], strict=True):
                assert list(rn) == list(ro)
                for f in rn:
                    assert type(rn[f]) is type(ro[f]), (k, f)
                    assert rn[f] == ro[f] or _same(rn[f], ro[f]), (rn["phase"], rn["name"], f)
        else:
            assert type(dn[k]) is type(do[k]), k
            assert dn[k] == do[k] or _same(dn[k], do[k]), (k, dn[k], do[k])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), hardware=st.sampled_from(HARDWARE),
       profile=st.sampled_from(PROFILES), layout=st.sampled_from(LAYOUTS),
       batch=st.one_of(st.just("max"), st.integers(1, 4096)),
       prompt=st.integers(1, 1 << 17), generate=st.integers(1, 1 << 14),
       reserve=st.sampled_from([0.0, 1e9, 7.5e10]))
def test_fast_estimate_equals_the_previous_implementation(model, hardware, profile, layout, batch,
                                                          prompt, generate, reserve):
    wl = Workload(batch=batch, prompt_tokens=prompt, generated_tokens=generate,
                  memory_reserve_bytes=reserve)
    try:
        old = _estimate_before(model, hardware, wl, profile, layout)
    except Exception as e:  # invalid layouts etc.: the new path fails the same way
        with pytest.raises(type(e)):
            estimate(model, hardware, wl, profile, parallelism=layout)
        return
    new = estimate(model, hardware, wl, profile, parallelism=layout)
    _assert_identical(new, old)
    assert new == old


def test_max_batch_does_not_depend_on_the_batch():
    # estimate() evaluates once at the given batch and reads max_batch there (it used to
    # evaluate at B = 1 for it): valid only while no structure's max_batch contains B.
    for model in MODELS:
        for profile in PROFILES:
            for layout in LAYOUTS:
                key = structure_key(get_preset(model), get_implementation(profile), layout)
                assert sy.B not in formulas(key).metrics["max_batch"].free_symbols


def test_point_function_falls_back_to_numpy_where_python_floats_differ():
    # a zero bandwidth: Python raises ZeroDivisionError where numpy gives inf; the point
    # function must then answer with numpy's numbers
    spec, hw, impl = get_preset("vanilla_70"), get_hardware("h100-sxm-80gb"), \
        get_implementation("static")
    f = formulas(structure_key(spec, impl))
    vals = symbol_values(spec, hw, impl, Workload(), 8.0)
    vals[sy.beta] = 0.0
    from costmodel.metrics import ARGS
    args = [float(vals[a]) for a in ARGS]
    with pytest.raises(ZeroDivisionError):
        f.point_fn(*args)
    metrics, rows = f.evaluate_all(vals)
    got = f.evaluate_point(args)
    want = [metrics[m] for m in METRICS] + list(rows.ravel())
    assert all(_same(a, b) for a, b in zip(got, want, strict=True))
    assert not all(math.isfinite(v) for v in got)


def test_trusted_rows_equal_validated_rows():
    kw = dict(phase="decode", name="layers.mlp", flops=1.0, useful_flops=1.0, weight_bytes=2.0,
              activation_bytes=3.0, kv_bytes=0.0, kernels=4.0, time_flops=1.0,
              dequant_flops=0.5, t_math_s=1e-6,
              t_mem_s=2e-6, time_s=3e-6, bound="memory", collective_bytes=0.0,
              collective_time_s=0.0)
    fast, slow = _op_row(**kw), OpRow(**kw)
    assert fast == slow and fast.model_dump() == slow.model_dump()
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_copy(update={"kernels": 5.0}).kernels == 5.0
    with pytest.raises(ValidationError, match="frozen"):
        fast.kernels = 2.0  # still frozen


# --- sweep: the fused, split, open-grid evaluation --------------------------------------------

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("layout", [Parallelism(), Parallelism(pp=2)])
def test_sweep_equals_estimate_at_every_point(model, layout):
    metrics = ("ttft_s", "tpot_s", "request_time_s", "throughput_tokens_per_s",
               "decode_step_time_s", "memory_bytes_total", "max_batch", "flops_total",
               "kv_bytes_total", "compute_bound_batch", "kv_overtakes_weights_context",
               "collective_time_s")
    for batch in ([1, 3, 64, 1000], "max"):
        df = sweep(model, "a100-sxm-40gb", batch=batch, prompt_tokens=[1, 100, 4096],
                   generated_tokens=[1, 7, 512], metrics=metrics, implementation="official",
                   memory_reserve_bytes=1e9, parallelism=layout)
        assert len(df) == (4 if batch != "max" else 1) * 9
        for row in df.itertuples():
            est = estimate(model, "a100-sxm-40gb", Workload(
                batch=int(row.batch), prompt_tokens=int(row.prompt_tokens),
                generated_tokens=int(row.generated_tokens), memory_reserve_bytes=1e9),
                "official", parallelism=layout)
            for m in metrics:
                got, want = getattr(row, m), float(getattr(est, m))
                # tpot = (request - TTFT) / (G - 1): at G = 1 both are rounding residue of 0
                floor = 1e-12 * est.request_time_s if m == "tpot_s" else 0.0
                assert got == pytest.approx(want, rel=1e-12, abs=floor) or _same(got, want), m


def test_split_grid_equals_flat_unsplit_formulas():
    # the old sweep path: every metric's own numpy function over the flat cartesian product
    spec, hw, impl = get_preset("block_main_b4_19"), get_hardware("l4"), \
        get_implementation("static")
    b, s_, g = np.array([1.0, 5, 33]), np.array([8.0, 1000]), np.array([2.0, 300, 4000])
    df = sweep(spec, hw, batch=b, prompt_tokens=s_, generated_tokens=g,
               metrics=("throughput_tokens_per_s", "ttft_s", "memory_bytes_per_sample"))
    B, S, G = (a.ravel() for a in np.meshgrid(b, s_, g, indexing="ij"))
    from costmodel.api import hardware_values, impl_values, model_values, parallel_values
    vals = model_values(spec) | impl_values(impl) | hardware_values(hw, impl) | \
        parallel_values(None, hw, spec) | {sy.M_res: 0.0, sy.B: B, sy.S: S, sy.G: G}
    f = formulas(structure_key(spec, impl))
    assert df["batch"].tolist() == B.tolist() and df["generated_tokens"].tolist() == G.tolist()
    for m in ("throughput_tokens_per_s", "ttft_s", "memory_bytes_per_sample"):
        np.testing.assert_allclose(df[m].to_numpy(), f.evaluate(m, vals), rtol=1e-12, atol=0)


# --- plan: the whole (tp, pp, batch) space in one sweep ---------------------------------------

def test_plan_search_equals_the_per_layout_path():
    from costmodel.capacity import _plan_layout, candidate_layouts, plan_capacity
    spec, hw, impl = get_preset("vanilla_70"), get_hardware("h100-sxm-80gb"), \
        get_implementation("static")
    wl = Workload(prompt_tokens=512, generated_tokens=64)
    plan = plan_capacity(spec, hw, wl, impl, tpot_bound_s=2e-3, target_tokens_per_s=1e6,
                         parallelism="search", max_gpus_per_replica=4)
    by_layout = {(o.tp, o.pp): o for o in plan.layouts}
    checked = 0
    for par, why in candidate_layouts(spec, 4):
        if why:
            continue
        got = _plan_layout(spec, hw, impl, wl, par, 2e-3)  # its own batch_curve, as before
        o = by_layout[(par.tp, par.pp)]
        if isinstance(got, str):
            assert o.verdict == got
        else:
            assert (o.batch, o.max_batch, o.tpot_s) == (got[1], got[3].max_batch, got[0].tpot_s)
            checked += 1
    assert checked >= 2


def test_streamed_chunks_equal_the_whole_grid():
    # chunks smaller than a structure go through flat arrays, a whole structure through the
    # open grid: the same rows, in the same order
    from costmodel.api import plan_sweep, sweep_chunks
    grid = dict(batch=[1, 2, 9], prompt_tokens=[16, 300], generated_tokens=[1, 5, 64],
                metrics=("tpot_s", "memory_bytes_total", "max_batch"))
    plan = plan_sweep(["vanilla_70", "block_main_b4_19"], "h100-sxm-80gb", **grid)
    whole = pd.concat(list(sweep_chunks(plan, chunk_points=10**6)), ignore_index=True)
    streamed = pd.concat(list(sweep_chunks(plan, chunk_points=7)), ignore_index=True)
    assert len(whole) == len(streamed) == 2 * 18
    for col in ("batch", "prompt_tokens", "generated_tokens", "max_batch", "fits"):
        assert whole[col].tolist() == streamed[col].tolist()
    for col in ("tpot_s", "memory_bytes_total"):
        np.testing.assert_allclose(whole[col].to_numpy(dtype=float),
                                   streamed[col].to_numpy(dtype=float), rtol=1e-12)


@pytest.mark.parametrize("dtypes", [dict(weight_dtype="w4a16-g128", kv_dtype="int8"),
                                    dict(weight_dtype="w8a8-fp8")])
def test_fast_estimate_equals_the_previous_one_with_quantized_formats(dtypes):
    # dequantisation FLOPs at the vector rate enter time_flops (docs/precision.md 3)
    impl = get_implementation("static", **dtypes)
    for model in MODELS:
        for batch in (1, 48, "max"):
            wl = Workload(batch=batch, prompt_tokens=1000, generated_tokens=33)
            new = estimate(model, "h100-sxm-80gb", wl, impl)
            _assert_identical(new, _estimate_before(model, "h100-sxm-80gb", wl, impl))
            # weight-only int4 dequantises in the kernel; W8A8 fp8 multiplies natively
            assert any(r.dequant_flops > 0 for r in new.ops) == ("w4" in dtypes["weight_dtype"])


@pytest.mark.parametrize("a, b", [(3.0, 1.0), (1.0, 3.0), (2.0, 2.0), (math.nan, 1.0)])
def test_scalar_switches_take_the_branch_select_would(a, b):
    # a closed-form decode sum's regime is the sign of a slope B * (scalar): decided once per
    # grid (costmodel.fused.Switches), it must give numpy select's numbers in every case,
    # including the fall-through branch and a NaN condition
    from costmodel import fused
    B, S, G, ka, kb = sp.symbols("B S G ka kb", positive=True)
    expr = sp.Piecewise((B * S + ka, B * (ka - kb) > 0), (B * G * kb, B * ka - B * kb < 0),
                        (S + G, True)) + sp.Max(B, S)
    args = (B, S, G, ka, kb)
    vals = {B: np.array([1.0, 4.0])[:, None, None], S: np.array([2.0, 9.0])[None, :, None],
            G: np.array([1.0, 5.0, 7.0])[None, None, :], ka: a, kb: b}
    sw = fused.switches((expr,), frozenset({B, S, G}), args)
    assert len(sw.nodes) == 1  # the condition was recognised as scalar
    (got,) = fused.evaluate((expr,), args, vals)
    want = sp.lambdify(args, expr, "numpy")(*[vals[x] for x in args])
    np.testing.assert_array_equal(got, np.broadcast_to(want, got.shape))


def test_switch_with_a_varying_condition_stays_a_select():
    from costmodel import fused
    B, S = sp.symbols("B S", positive=True)
    expr = sp.Piecewise((B, B - S > 0), (S, True))
    assert fused.switches((expr,), frozenset({B, S}), (B, S)).nodes == []
    (got,) = fused.evaluate((expr,), (B, S), {B: np.array([1.0, 5.0]), S: np.array([3.0, 3.0])})
    assert got.tolist() == [3.0, 5.0]
