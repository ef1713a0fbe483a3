"""The cost model as an engine (issue 18, docs/performance.md): the fast `estimate`, `sweep`
and plan paths give exactly the numbers of the straightforward implementations they replaced.

`_estimate_before` is `estimate` as it was before issue 18 (numpy-compiled formulas evaluated
at B = 1 and at the batch, every result validated by pydantic); it is the independent reference
the fast path is compared with, field by field, with ==."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmodel import Workload, estimate, get_hardware, get_preset, sweep
from costmodel import symbols as sy
from costmodel.api import Estimate, OpRow, _bound, _op_row, structure_key, symbol_values
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
    f = formulas(structure_key(spec, impl, par))
    pi = hw.compute_flops_per_s(impl.compute_dtype)
    metrics, rows = f.evaluate_all(symbol_values(spec, hw, impl, workload, 1.0, par))
    max_batch = int(metrics["max_batch"])
    batch = max(max_batch, 1) if workload.batch == "max" else workload.batch
    if batch != 1:
        metrics, rows = f.evaluate_all(symbol_values(spec, hw, impl, workload, batch, par))
    ops = []
    for row, vals in zip(f.rows, rows, strict=True):
        v = dict(zip(ROW_FIELDS, map(float, vals), strict=True))
        ops.append(OpRow(
            phase=row.phase, name=row.op, flops=v["flops"], useful_flops=v["useful_flops"],
            weight_bytes=v["weight_bytes"],
            activation_bytes=v["act_read_bytes"] + v["act_write_bytes"],
            kv_bytes=v["kv_read_bytes"] + v["kv_write_bytes"], kernels=v["kernels"],
            time_flops=v["t_math_s"] * pi, t_math_s=v["t_math_s"], t_mem_s=v["t_mem_s"],
            time_s=v["time_s"], bound=_bound(v["t_math_s"], v["t_mem_s"], v["time_s"],
                                             v["comm_time"]),
            collective_bytes=v["comm_bytes"], collective_time_s=v["comm_time"]))
    return Estimate(
        model=spec.name, kind=spec.kind, hardware=hw.id, implementation=impl.name, batch=batch,
        prompt_tokens=workload.prompt_tokens, generated_tokens=workload.generated_tokens,
        **{m: metrics[m] for m in METRICS if m != "max_batch"},
        max_batch=max_batch, fits=batch <= max_batch, ops=ops,
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
              activation_bytes=3.0, kv_bytes=0.0, kernels=4.0, time_flops=1.0, t_math_s=1e-6,
              t_mem_s=2e-6, time_s=3e-6, bound="memory", collective_bytes=0.0,
              collective_time_s=0.0)
    fast, slow = _op_row(**kw), OpRow(**kw)
    assert fast == slow and fast.model_dump() == slow.model_dump()
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_copy(update={"kernels": 5.0}).kernels == 5.0
    with pytest.raises(Exception):
        fast.kernels = 2.0  # still frozen
