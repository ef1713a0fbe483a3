"""The serving simulator (docs/serving.md): its per-forward times against the cost model, its
queueing against Little's law and the static-batch limit, its planning and its bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from costmodel import Workload, estimate
from costmodel.api import resolve_model, structure_key
from costmodel.implementation import get_implementation
from serving import SLO, SchedulerConfig, Trace, max_rate, read_trace, simulate
from serving.predictor import (
    REGIMES,
    check_linear_form,
    coefficients,
    equal_aggregates,
    forward_kinds,
)
from serving.requests import parse_distribution, poisson_trace

HW = "h100-sxm-80gb"
MODELS = ["vanilla_410", "block_main_b4_1.2b"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("profile", ["static", "hf-legacy"])
def test_forward_coefficients_reproduce_the_compiled_formulas(model, profile):
    """Each regime's aggregate form (weights once, per-token, per-context terms; the mask
    rectangle of a multi-position forward) equals the cost model's op formulas at points of
    that regime the coefficients were not read from."""
    from costmodel import symbols as sy
    from costmodel.api import hardware_values, impl_values, model_values
    from costmodel.hardware import get_hardware

    spec, impl, hw = resolve_model(model), get_implementation(profile), get_hardware(HW)
    key = structure_key(spec, impl)
    vals = model_values(spec) | impl_values(impl) | hardware_values(hw, impl)
    vals |= {sy.B: 1.0, sy.S: 1.0, sy.G: 1.0, sy.M_res: 0.0}
    rng = np.random.default_rng(0)
    pts = {"one": [(float(rng.integers(1, 64)), 1.0, float(rng.integers(0, 8192)))
                   for _ in range(5)],
           "multi": [(float(rng.integers(1, 64)), float(rng.integers(2, 4096)),
                      float(rng.integers(0, 8192))) for _ in range(5)]}
    for kind in forward_kinds(spec.kind):
        for regime in REGIMES:
            coef = coefficients(key, kind, vals, regime)
            assert check_linear_form(key, kind, vals, coef, pts[regime], regime) < 1e-9
            w = coef[:, 1, 0].sum()  # weight-side bytes of a forward with no sequence
            assert w > 0
        # the regimes differ: a one-position step is not the multi-position form at q = 1
        # (no mask, no output layout copy, fewer kernels)
        one, multi = (coefficients(key, kind, vals, r) for r in REGIMES)
        kernels_one = one[:, 2, :] @ equal_aggregates(4, 1, 100)
        kernels_multi = multi[:, 2, :] @ equal_aggregates(4, 1, 100)
        assert kernels_one.sum() < kernels_multi.sum()
        with pytest.raises(ValueError, match="q: 1 new positions lie outside"):
            check_linear_form(key, kind, vals, multi, [(2.0, 1.0, 5.0)], "multi")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("policy", ["prefill-first", "chunked"])
def test_static_batch_limit_matches_estimate(model, policy):
    """All requests at t = 0 with equal lengths: the simulator's TTFT, TPOT and request time
    are the cost model's at that batch."""
    B, S, G = 12, 512, 23
    tr = Trace(np.zeros(B), np.full(B, S), np.full(B, G))
    r = simulate(model, HW, trace=tr,
                 scheduler=SchedulerConfig(policy=policy, token_budget=B * S))
    e = estimate(model, HW, Workload(batch=B, prompt_tokens=S, generated_tokens=G))
    assert r.ttft_s.p50 == pytest.approx(e.ttft_s, rel=1e-9)
    assert r.ttft_s.p99 == pytest.approx(e.ttft_s, rel=1e-9)
    assert r.tpot_s.p50 == pytest.approx(e.tpot_s, rel=1e-9)
    assert r.e2e_s.p99 == pytest.approx(e.request_time_s, rel=1e-9)
    assert r.iterations == G


@pytest.mark.parametrize("model", MODELS)
def test_far_below_capacity_ttft_is_one_prefill_and_tpot_the_small_batch_step(model):
    S, G = 512, 64
    r = simulate(model, HW, rate=0.5, prompt_tokens=S, generated_tokens=G, duration_s=200,
                 seed=3)
    e1 = estimate(model, HW, Workload(batch=1, prompt_tokens=S, generated_tokens=G))
    e2 = estimate(model, HW, Workload(batch=2, prompt_tokens=S, generated_tokens=G))
    step = max(e2.tpot_s, e2.decode_step_time_s)  # one decode step (a whole block: block model)
    assert r.ttft_s.p50 == pytest.approx(e1.ttft_s, rel=1e-9)
    ttft_all = r.ttft_s
    assert ttft_all.p90 <= e1.ttft_s + step
    assert r.tpot_s.p50 == pytest.approx(e1.tpot_s, rel=1e-6)
    assert r.sustainable and r.slo_met


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rate", [40.0, 400.0])
def test_littles_law(model, rate):
    """Time-average number in the system (from the recorded queue and running series) equals
    arrival rate x mean time in the system."""
    r = simulate(model, HW, rate=rate, prompt_tokens="uniform:128:1024",
                 generated_tokens="uniform:16:128", duration_s=2000 / rate, seed=1)
    lam = r.requests / r.makespan_s  # arrivals over the same horizon the average covers
    assert r.mean_in_system == pytest.approx(lam * r.e2e_s.mean, rel=0.03)
    assert r.mean_in_system > 0.05


def test_above_capacity_the_queue_grows_and_the_rate_is_not_sustainable():
    low = simulate("vanilla_410", HW, rate=50, prompt_tokens=2048, generated_tokens=128,
                   duration_s=10, seed=0)
    assert low.sustainable
    cap_rps = low.throughput_requests_per_s  # below capacity the server completes the offer
    over = simulate("vanilla_410", HW, rate=1500, prompt_tokens=2048, generated_tokens=128,
                    duration_s=3, seed=0)
    assert not over.sustainable
    assert "not sustainable" in over.verdict
    w = np.asarray(over.series.waiting)
    t = np.asarray(over.series.t_s)
    in_window = t <= over.arrival_window_s
    assert w[in_window][-1] > 100 and w[in_window][-1] > w[in_window][len(w[in_window]) // 4]
    assert over.throughput_requests_per_s < 0.5 * over.offered_rate_per_s
    assert cap_rps > 0


def test_same_seed_same_result_and_another_seed_differs():
    kw = dict(prompt_tokens="lognormal:512:0.8", generated_tokens="uniform:8:256",
              duration_s=30)
    a = simulate("block_main_b4_1.2b", HW, 30, seed=7, **kw).model_dump(exclude={"wall_s"})
    b = simulate("block_main_b4_1.2b", HW, 30, seed=7, **kw).model_dump(exclude={"wall_s"})
    c = simulate("block_main_b4_1.2b", HW, 30, seed=8, **kw).model_dump(exclude={"wall_s"})
    assert a == b
    assert a != c


def test_kv_pool_exhaustion_preempts_the_newest_and_everything_completes():
    spec = resolve_model("vanilla_410")
    per_token = 2 * spec.stack.n_layers * spec.stack.kv_heads * spec.stack.dh * 2  # bf16
    pool = 40 * 1024 * per_token  # 40 sequences of 1024 entries
    r = simulate("vanilla_410", HW, rate=400, prompt_tokens=512, generated_tokens=512,
                 duration_s=0.5, seed=2,
                 scheduler=SchedulerConfig(kv_capacity_bytes=pool, page_tokens=16))
    assert r.preemptions > 0
    assert r.completed == r.requests and r.rejected == 0
    assert max(r.series.kv_utilization) <= 1.0 + 1e-12
    assert max(r.series.running) <= 80  # at least 512 entries (32 pages) each


def test_a_request_larger_than_the_pool_is_refused_with_a_reason():
    tr = Trace(np.array([0.0, 0.1]), np.array([100, 100_000]), np.array([10, 10]))
    r = simulate("vanilla_410", HW, trace=tr,
                 scheduler=SchedulerConfig(kv_capacity_bytes=2e9))
    assert r.rejected == 1 and r.completed == 1
    assert "never fit" in r.verdict


def test_max_rate_bisects_and_says_when_no_rate_meets_the_slo():
    slo = SLO(ttft_s=0.05, tpot_s=0.02, percentile=95)
    res = max_rate("vanilla_410", HW, 2048, 128, slo, requests=300)
    assert res.met and res.max_rate_per_s > 0
    ok = [p.rate_per_s for p in res.probes if p.slo_met]
    bad = [p.rate_per_s for p in res.probes if not p.slo_met]
    assert max(ok) == pytest.approx(res.max_rate_per_s)
    assert min(bad) <= res.max_rate_per_s * 1.02 + 1e-12
    assert res.replicas_for(10 * res.max_rate_per_s) == 10
    none = max_rate("vanilla_410", HW, 2048, 128, SLO(ttft_s=1e-4, tpot_s=1.0), requests=50)
    assert not none.met and none.max_rate_per_s == 0
    assert none.answer.startswith("no rate meets the SLO") and "TTFT" in none.answer
    assert none.replicas_for(5.0) is None


def test_distributions_and_traces(tmp_path):
    assert parse_distribution("2048").mean == 2048
    u = parse_distribution("uniform:10:20").sample(np.random.default_rng(0), 1000)
    assert u.min() >= 10 and u.max() <= 20
    ln = parse_distribution("lognormal:100:0.5:300").sample(np.random.default_rng(0), 5000)
    assert 90 < np.median(ln) < 110 and ln.max() <= 300
    for bad in ("0", "uniform:5:1", "lognormal:100", "gamma:1:2", "1.5"):
        with pytest.raises(ValueError, match="prompt_tokens"):
            parse_distribution(bad, "prompt_tokens")
    tr = poisson_trace(2.0, 1000, 10, 10, seed=0)
    assert abs(len(tr) - 2000) < 5 * np.sqrt(2000)
    scaled = poisson_trace(4.0, 500, 10, 10, seed=0)  # same draws at twice the rate
    np.testing.assert_allclose(scaled.arrival_s, tr.arrival_s[: len(scaled)] / 2)
    f = tmp_path / "trace.csv"
    f.write_text("arrival_s,prompt_tokens,generated_tokens\n0,10,5\n0.5,x,3\n1,20\n2,30,7\n")
    t = read_trace(f)
    assert len(t) == 2 and list(t.prompt_tokens) == [10, 30]
    assert [w.split(":")[1] for w in t.warnings] == ["3", "4"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no valid requests"):
        read_trace(tmp_path / "empty.txt")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "costmodel.cli", "simulate", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_simulate_json_and_bad_input():
    p = _cli("--model", "vanilla_410", "--rate", "5", "--prompt-tokens", "uniform:128:512",
             "--generated-tokens", "64", "--duration", "20", "--seed", "3", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["requests"] > 50 and out["ttft_s"]["p95"] > 0 and out["sustainable"]
    for args, field in ((["--rate", "0"], "--rate"), (["--rate", "-2"], "--rate"),
                        (["--rate", "1", "--duration", "1e9"], "--duration"),
                        (["--rate", "1", "--generated-tokens", "uniform:9"],
                         "--generated-tokens"),
                        (["--rate", "1", "--max-running", "0"], "--max-running")):
        p = _cli("--model", "vanilla_410", *args)
        assert p.returncode == 2, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0]


def test_chunked_prefill_trades_ttft_for_steadier_tpot():
    """Prefill-first stalls running decodes behind every prefill; chunked prefill runs them in
    every iteration beside prompt chunks: lower TPOT, later first tokens (Sarathi-Serve)."""
    runs = {pol: simulate("vanilla_410", HW, 60, "uniform:1024:4096", 128, duration_s=20,
                          seed=0, scheduler=SchedulerConfig(policy=pol))
            for pol in ("prefill-first", "chunked")}
    pf, ch = runs["prefill-first"], runs["chunked"]
    assert ch.tpot_s.p50 < pf.tpot_s.p50 and ch.tpot_s.p99 < pf.tpot_s.p99
    assert ch.ttft_s.p50 > pf.ttft_s.p50
    assert ch.completed == pf.completed == pf.requests


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("profile", ["static", "hf-legacy"])
def test_decode_stretch_equals_its_forwards_timed_one_by_one(model, profile):
    """The vectorised decode stretch (aggregates built per iteration index, one regime per
    forward kind) equals timing each iteration's forwards from the sequences' own q and c."""
    from serving.predictor import build_predictor
    from serving.simulator import Simulator

    p = build_predictor(model, HW, profile)
    rng = np.random.default_rng(5)
    n = 7
    tr = Trace(np.zeros(n), rng.integers(1, 600, n), np.full(n, 50))
    sim = Simulator(p, tr, SchedulerConfig())
    sim.g[:] = rng.integers(1, 20, n)
    ids = np.arange(n)
    k, lb, P = 9, sim.lb, sim.P
    agg = sim._segment_aggregates(ids, k)
    got = p.iteration_time_s(agg)  # regimes derived from q_max
    np.testing.assert_array_equal(got, p.iteration_time_s(agg, sim.stretch_regimes))
    for t in range(k):
        g = sim.g + t
        if sim.block:
            b = g % lb == 0
            want = (p.time_s("block", np.ones(b.sum()), sim.n_p[b] + g[b] // lb - 1)
                    + p.time_s("prefix", np.full(b.sum(), P), np.zeros(b.sum()))
                    + p.time_s("token", np.ones((~b).sum()), P + g[~b] % lb - 1))
        else:
            want = p.time_s("step", np.ones(n), sim.S + g - 1)
        assert got[t] == pytest.approx(want, rel=1e-12)
