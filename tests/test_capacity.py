"""costmodel.capacity: hand-checkable properties of the capacity plan."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmodel import Workload, estimate, get_hardware
from costmodel.capacity import batch_curve, plan_capacity
from costmodel.loading import load_model
from costmodel.presets import neox_stack
from costmodel.spec import VanillaSpec

HW = "h100-sxm-80gb"
WL = Workload(prompt_tokens=2048, generated_tokens=128)


def test_without_bound_uses_max_batch_and_matches_estimate():
    plan = plan_capacity("vanilla_410", HW, WL, target_tokens_per_s=50_000)
    est = estimate("vanilla_410", HW, WL.model_copy(update={"batch": "max"}))
    assert plan.batch == est.batch == est.max_batch == plan.max_batch
    assert plan.limited_by == "memory"
    assert plan.throughput_tokens_per_s_per_replica == pytest.approx(est.throughput_tokens_per_s,
                                                                     rel=1e-12)
    assert plan.memory_bytes_per_replica == pytest.approx(est.memory_bytes_total, rel=1e-12)
    assert plan.tpot_s == pytest.approx(est.tpot_s, rel=1e-12)


def test_replicas_is_ceil_of_target_over_replica_throughput():
    target = 1.0e6
    plan = plan_capacity("vanilla_410", HW, WL, target_tokens_per_s=target)
    per = plan.throughput_tokens_per_s_per_replica
    assert plan.replicas == math.ceil(target / per)
    assert plan.replicas * per >= target > (plan.replicas - 1) * per
    assert plan.gpus == plan.replicas * plan.gpus_per_replica == plan.replicas
    assert plan.throughput_tokens_per_s_total == pytest.approx(plan.replicas * per)


def test_latency_bound_is_honoured_and_tight():
    bound = 2e-3
    plan = plan_capacity("vanilla_410", HW, WL, tpot_bound_s=bound)
    assert plan.limited_by == "latency"
    assert plan.tpot_s <= bound
    assert 1 <= plan.batch < plan.max_batch
    next_batch = estimate("vanilla_410", HW, WL.model_copy(update={"batch": plan.batch + 1}))
    assert next_batch.tpot_s > bound
    assert plan.replicas == 1  # no throughput target


def test_loose_bound_is_limited_by_memory():
    plan = plan_capacity("vanilla_410", HW, WL, tpot_bound_s=10.0)
    assert plan.batch == plan.max_batch
    assert plan.limited_by == "memory"


def test_cost_formulas():
    price = 2.5
    plan = plan_capacity("vanilla_160", HW, WL, target_tokens_per_s=3e5, price_per_gpu_hour=price)
    per = plan.throughput_tokens_per_s_per_replica
    assert plan.cost_per_hour == pytest.approx(plan.gpus * price)
    assert plan.cost_per_million_tokens == pytest.approx(price / (per * 3600) * 1e6)
    assert plan.cost_per_million_tokens_at_target == pytest.approx(
        plan.gpus * price / (3e5 * 3600) * 1e6)
    # rounding the fleet up can only make the served tokens dearer
    assert plan.cost_per_million_tokens_at_target >= plan.cost_per_million_tokens
    free = plan_capacity("vanilla_160", HW, WL, target_tokens_per_s=3e5, price_per_gpu_hour=0)
    assert free.cost_per_million_tokens == 0
    no_price = plan_capacity("vanilla_160", HW, WL, target_tokens_per_s=3e5)
    assert no_price.cost_per_million_tokens is None and no_price.cost_per_hour is None


def test_memory_reserve_is_kept_free():
    reserve = 20 * 2**30
    wl = Workload(prompt_tokens=2048, generated_tokens=128, memory_reserve_bytes=reserve)
    plan = plan_capacity("vanilla_410", HW, wl, target_tokens_per_s=1e5)
    cap = get_hardware(HW).capacity_bytes()
    assert plan.memory_bytes_per_replica <= cap - reserve
    assert plan.max_batch < plan_capacity("vanilla_410", HW, WL, target_tokens_per_s=1e5).max_batch


def test_block_model_and_inverse_questions():
    plan = plan_capacity("block_main_b4_1.2b", HW, WL, target_tokens_per_s=1e6, tpot_bound_s=2e-3)
    est = estimate("block_main_b4_1.2b", HW, WL.model_copy(update={"batch": plan.batch}))
    assert plan.tpot_s <= 2e-3
    assert plan.kv_overtakes_weights_context == pytest.approx(est.kv_overtakes_weights_context)


def test_compute_bound_batch_of_a_plan_is_the_decode_crossing():
    # one decode step (G = 2 after a 1-token prompt: KV reads negligible): the plan's compute-bound batch is where
    # the step's summed T_math reaches its T_mem, checked on the estimate's per-op rows
    spec = load_model(str(Path(__file__).resolve().parent.parent / "examples" / "configs"
                          / "llama-2-7b.json"))
    wl = Workload(batch=1, prompt_tokens=1, generated_tokens=2)
    b = plan_capacity(spec, HW, wl, target_tokens_per_s=1e4).compute_bound_batch
    assert 1 < b < 1e5

    def terms(batch):
        e = estimate(spec, HW, wl.model_copy(update={"batch": batch}))
        rows = [r for r in e.ops if r.phase == "decode"]
        return sum(r.t_math_s for r in rows), sum(r.t_mem_s for r in rows)

    t_math, t_mem = terms(math.ceil(b))
    assert t_math >= t_mem
    t_math, t_mem = terms(math.floor(b))
    assert t_math < t_mem or math.floor(b) == b


def test_batch_curve_is_one_sweep_matching_estimate():
    curve = batch_curve("vanilla_410", HW, WL)
    max_batch = estimate("vanilla_410", HW, WL).max_batch
    assert list(curve["batch"]) == list(range(1, max_batch + 1))
    assert curve["memory_bytes_total"].is_monotonic_increasing
    for b in (1, 17, max_batch):
        est = estimate("vanilla_410", HW, WL.model_copy(update={"batch": b}))
        row = curve.iloc[b - 1]
        assert row["tpot_s"] == pytest.approx(est.tpot_s, rel=1e-9)
        assert row["throughput_tokens_per_s"] == pytest.approx(est.throughput_tokens_per_s,
                                                               rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target_tokens_per_s": 0}, "target_tokens_per_s"),
        ({"target_tokens_per_s": -5}, "target_tokens_per_s"),
        ({"target_tokens_per_s": float("nan")}, "target_tokens_per_s"),
        ({"target_tokens_per_s": "lots"}, "target_tokens_per_s"),
        ({"tpot_bound_s": 0}, "tpot_bound_s"),
        ({"tpot_bound_s": 1e-3, "price_per_gpu_hour": -1}, "price_per_gpu_hour"),
        ({}, "target"),
        ({"tpot_bound_s": 1e-9}, "tpot_bound_s"),  # below what batch 1 achieves
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        plan_capacity("vanilla_410", HW, WL, **kwargs)


def test_model_that_does_not_fit_names_hardware():
    huge = VanillaSpec(name="huge", stack=neox_stack(80, 8192, 64))  # ~65B parameters
    with pytest.raises(ValueError, match=r"^hardware: huge does not fit on l4"):
        plan_capacity(huge, "l4", WL, target_tokens_per_s=100)


@settings(max_examples=25, deadline=None)
@given(target=st.floats(1e2, 1e8), bound_ms=st.floats(0.8, 50.0))
def test_plan_properties(target, bound_ms):
    plan = plan_capacity("vanilla_70", HW, WL, target_tokens_per_s=target,
                         tpot_bound_s=bound_ms * 1e-3)
    assert plan.tpot_s <= bound_ms * 1e-3
    assert 1 <= plan.batch <= plan.max_batch
    per = plan.throughput_tokens_per_s_per_replica
    assert plan.replicas * per >= target > (plan.replicas - 1) * per


def test_plan_uses_the_calibrated_expectation_where_a_record_exists():
    """A record for (device, profile) makes the plan buy more GPUs than the bound would
    (docs/published.md 4); without one the plan says its figures are a bound."""
    from costmodel.calibration import calibration_for

    w = Workload(prompt_tokens=2048, generated_tokens=128)
    rec = calibration_for("h100-sxm-80gb", "official-eager")
    assert rec is not None
    kw = dict(target_tokens_per_s=1e5, implementation="official-eager")
    expected = plan_capacity("vanilla_410", "h100-sxm-80gb", w, **kw)
    bound = plan_capacity("vanilla_410", "h100-sxm-80gb", w, use_bound=True, **kw)
    assert expected.basis.startswith("calibrated expectation") and rec.id in expected.basis
    assert bound.basis.startswith("roofline bound (asked for)")
    assert (expected.throughput_tokens_per_s_per_replica
            < bound.throughput_tokens_per_s_per_replica)
    assert expected.gpus > bound.gpus
    plain = plan_capacity("vanilla_410", "a100-sxm-80gb", w, target_tokens_per_s=1e5)
    assert plain.basis.startswith("roofline bound (no calibration record for a100-sxm-80gb")
