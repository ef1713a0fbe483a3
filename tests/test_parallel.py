"""Tensor and pipeline parallelism in the cost model (costmodel.parallel, costmodel.collectives,
docs/parallelism.md): sharded formulas reduce to the unsharded ones at tp = 1, weights per GPU
are 1/tp of the total plus the replicated norms, collective bytes follow the ring formulas, the
pipeline schedule's limits, the plan search, and bad input named by field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from costmodel import Parallelism, Workload, estimate, formula, sweep
from costmodel import symbols as sy
from costmodel.api import structure_key, symbol_values
from costmodel.capacity import plan_capacity
from costmodel.collectives import allgather_time, allreduce_time, allreduce_time_s
from costmodel.errors import UserError
from costmodel.hardware import get_hardware
from costmodel.hf_config import read_json_file, spec_from_hf_config
from costmodel.implementation import get_implementation
from costmodel.metrics import formulas
from costmodel.presets import get_preset

H100 = "h100-sxm-80gb"
WL = Workload(batch=4, prompt_tokens=64, generated_tokens=32)
CONFIGS = Path(__file__).resolve().parent.parent / "examples" / "configs"


def _llama70b():
    return spec_from_hf_config(read_json_file(CONFIGS / "llama-2-70b.json", field="m"),
                               name="llama-2-70b")


def test_ring_formulas() -> None:
    M, p = sy.B * 1000, 8  # any payload expression
    vals = {sy.B: 3.0, sy.beta_link: 4.5e11, sy.alpha_link: 4.7e-7}
    t = float(allreduce_time(M, p).subs(vals))
    assert t == pytest.approx(2 * 7 / 8 * 3000 / 4.5e11 + 14 * 4.7e-7, rel=1e-12)
    assert t == pytest.approx(allreduce_time_s(3000, 8, 4.5e11, 4.7e-7), rel=1e-12)
    assert float(allgather_time(M, p).subs(vals)) == pytest.approx(
        7 / 8 * 3000 / 4.5e11 + 7 * 4.7e-7, rel=1e-12)
    assert allreduce_time_s(3000, 1, 1e9, 1e-6) == 0.0


@pytest.mark.parametrize("model", ["vanilla_70", "block_main_b4_19"])
def test_sharded_formulas_at_tp1_equal_the_unsharded(model: str) -> None:
    spec, impl, hw = get_preset(model), get_implementation("static"), get_hardware(H100)
    plain = formulas(structure_key(spec, impl))
    sharded = formulas(structure_key(spec, impl, Parallelism(tp=2)))
    vals = symbol_values(spec, hw, impl, WL, 4)
    vals |= {sy.tp: 1.0, sy.alpha_link: 0.0, sy.beta_link: 1e12}
    a, _ = plain.evaluate_all(vals)
    b, _ = sharded.evaluate_all(vals)
    for m in ("request_time_s", "ttft_s", "flops_total", "weights_bytes_per_gpu",
              "memory_bytes_per_gpu", "max_batch", "kv_bytes_total"):
        assert b[m] == pytest.approx(a[m], rel=1e-12), m
    assert b["collective_bytes_total"] == 0.0


def test_llama70b_tp8_weights_per_gpu_and_collectives() -> None:
    spec = _llama70b()
    wl = Workload(batch=1, prompt_tokens=128, generated_tokens=128)
    est = estimate(spec, H100, wl, parallelism=Parallelism(tp=8))
    st = spec.stack
    norms = (2 * st.n_layers + 1) * st.d_model * 2  # RMSNorm weights, bf16, on every GPU
    assert est.weights_bytes == spec.params_total * 2
    assert est.weights_bytes_per_gpu == pytest.approx(
        (est.weights_bytes - norms) / 8 + norms, rel=1e-12)
    assert (est.tp, est.pp, est.gpus) == (8, 1, 8)
    # all-reduces: two per layer and one for the embedding per forward, of [B, q, D] bf16;
    # the LM head's all-gather of B x V logits per forward (one row in prefill); 7 = tp - 1
    forwards_rows = 128 + 127  # prefill rows, then one row per decode step
    reduce_bytes = (2 * st.n_layers + 1) * forwards_rows * st.d_model * 2
    gather_bytes = 128 * spec.vocab_size * 2
    assert est.collective_bytes_total == pytest.approx(
        2 * 7 * reduce_bytes + 7 * gather_bytes, rel=1e-12)
    assert est.collective_time_s > 0
    one = estimate(spec, H100, wl)
    assert not one.fits and est.fits
    assert est.tpot_s < one.tpot_s / 4  # weights read 8x faster, minus the collectives


def test_kv_heads_below_tp_are_replicated() -> None:
    spec = _llama70b()  # 8 KV heads
    kv_traffic = {tp: sum(r.kv_bytes for r in estimate(
        spec, H100, WL, parallelism=Parallelism(tp=tp)).ops) for tp in (4, 8, 16)}
    # KV read/written per GPU halves from 2 heads (tp 4) to 1 (tp 8), then stays at one head
    assert kv_traffic[8] == pytest.approx(kv_traffic[4] / 2, rel=1e-12)
    assert kv_traffic[16] == pytest.approx(kv_traffic[8], rel=1e-12)


def test_pipeline_batch1_is_the_sum_of_its_stages() -> None:
    wl = Workload(batch=1, prompt_tokens=64, generated_tokens=32)
    one = estimate("vanilla_70", H100, wl)
    pp2 = estimate("vanilla_70", H100, wl, parallelism=Parallelism(pp=2))
    sends = sum(r.time_s for r in pp2.ops if r.name == "pipeline.send")
    assert sends > 0
    # batch 1: one micro-batch walks both stages in turn, so no speed-up, only the sends
    assert pp2.request_time_s == pytest.approx(one.request_time_s + sends, rel=1e-9)
    assert pp2.weights_bytes_per_gpu < 0.75 * one.weights_bytes_per_gpu
    assert pp2.max_batch > one.max_batch


def test_block_natural_split_holds_each_decoder_on_its_own_gpu() -> None:
    spec = get_preset("block_main_b4_19")
    est = estimate(spec, H100, WL, parallelism=Parallelism(pp=2))
    stage0 = spec.params_total - spec.token_decoder.params - spec.params_expansion \
        - 2 * spec.vocab_size * spec.token_decoder.d_model
    stage1 = spec.params_total - stage0
    assert est.weights_bytes_per_gpu == pytest.approx(2 * max(stage0, stage1), rel=1e-12)
    with pytest.raises(UserError, match=r"^pp: a Block Transformer"):
        estimate(spec, H100, WL, parallelism=Parallelism(pp=4))


@pytest.mark.parametrize(("par", "hw", "match"), [
    (Parallelism(tp=3), H100, r"^tp: 3 must divide the query heads"),
    (Parallelism(pp=7), H100, r"^pp: 7 stages exceed the layer count"),
    (Parallelism(tp=2), "mi300x", r"^hardware: mi300x has no interconnect figures"),
])
def test_bad_layouts_name_the_field(par, hw, match) -> None:
    with pytest.raises(UserError, match=match):
        estimate("vanilla_70", hw, WL, parallelism=par)


def test_parallelism_validates_its_fields() -> None:
    with pytest.raises(ValidationError, match="tp"):
        Parallelism(tp=0)
    with pytest.raises(ValidationError, match="extra"):
        Parallelism(tp=2, dp=2)
    assert Parallelism(tp=2, pp=4, replicas=3).gpus == 24


def test_sweep_has_tp_axis_matching_estimate() -> None:
    layouts = [Parallelism(), Parallelism(tp=2)]
    df = sweep("vanilla_70", H100, batch=[1, 4], prompt_tokens=64, generated_tokens=32,
               parallelism=layouts, metrics=("tpot_s", "collective_time_s"))
    assert sorted(set(df["tp"])) == [1.0, 2.0] and len(df) == 4
    row = df[(df["tp"] == 2) & (df["batch"] == 4)].iloc[0]
    est = estimate("vanilla_70", H100, WL, parallelism=Parallelism(tp=2))
    assert row["tpot_s"] == pytest.approx(est.tpot_s, rel=1e-12)
    assert row["collective_time_s"] == pytest.approx(est.collective_time_s, rel=1e-12)


def test_formula_shows_the_collective() -> None:
    f = formula("decode/layers.attn.allreduce/time", "vanilla_70",
                parallelism=Parallelism(tp=2))
    assert {"tp", "beta_link", "alpha_link"} <= set(f.symbols)
    assert "network" in {r.bound for r in estimate(
        "vanilla_70", H100, WL, parallelism=Parallelism(tp=2)).ops}


def test_plan_search_picks_fewest_gpus_and_says_why_others_lost() -> None:
    plan = plan_capacity("vanilla_70", H100, WL, target_tokens_per_s=2e6, tpot_bound_s=2e-3,
                         parallelism="search", max_gpus_per_replica=2)
    found = [o for o in plan.layouts if o.gpus is not None]
    assert {(o.tp, o.pp) for o in plan.layouts} == {(1, 1), (1, 2), (2, 1)}
    assert plan.gpus == min(o.gpus for o in found)
    assert plan.tpot_s <= 2e-3
    assert plan.gpus == plan.replicas * plan.tp * plan.pp
    assert [o.verdict for o in plan.layouts].count("chosen") == 1
    assert all(o.verdict for o in plan.layouts)


def test_plan_search_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"^tpot_bound_s: .* every layout"):
        plan_capacity("vanilla_70", H100, WL, tpot_bound_s=1e-9, parallelism="search",
                      max_gpus_per_replica=2)
    with pytest.raises(ValueError, match=r"^parallelism: expected"):
        plan_capacity("vanilla_70", H100, WL, tpot_bound_s=1.0, parallelism="auto")


def test_cli_plan_and_estimate_layouts(capsys) -> None:
    from costmodel.cli import main

    assert main(["plan", "--model", "vanilla_70", "--tokens-per-s", "1e6", "--tpot-ms", "5",
                 "--max-gpus-per-replica", "2", "--prompt", "64", "--generate", "32"]) == 0
    out = capsys.readouterr().out
    assert "chosen: tp=" in out and "verdict" in out
    assert main(["estimate", "--model", "vanilla_70", "--tp", "3", "--prompt", "8",
                 "--generate", "8"]) == 2
    assert "tp: 3 must divide" in capsys.readouterr().err
    assert main(["plan", "--model", "vanilla_70", "--tokens-per-s", "1",
                 "--tokens-per-minute", "1"]) == 2


def test_quantised_weights_per_gpu_under_tp() -> None:
    """w8a16 on llama-2-7b, tp = 2: int8 elements halve; per-output-channel bf16 scales follow
    their columns (column-parallel qkv, gate, up) or stay whole (row-parallel dense, down);
    norms replicated; vocab-parallel bf16 table and int8 head (docs/parallelism.md 1,
    docs/precision.md 1)."""
    spec = spec_from_hf_config(read_json_file(CONFIGS / "llama-2-7b.json", field="m"),
                               name="llama-2-7b")
    N, D, F, V = 32, 4096, 11008, 32000
    layer = (D * 3 * D // 2 + 3 * D // 2 * 2 + D // 2 * D + D * 2
             + 2 * (D * F // 2 + F // 2 * 2) + F // 2 * D + D * 2 + 2 * D * 2)
    per_gpu = N * layer + D * 2 + V * D // 2 * 2 + V // 2 * D + V // 2 * 2
    impl = get_implementation("static", weight_dtype="w8a16")
    wl = Workload(batch=1, prompt_tokens=5, generated_tokens=200)
    one = estimate(spec, "a100-sxm-80gb", wl, impl)
    two = estimate(spec, "a100-sxm-80gb", wl, impl, parallelism=Parallelism(tp=2))
    assert two.weights_bytes_per_gpu == per_gpu
    assert 0.5 < two.weights_bytes_per_gpu / one.weights_bytes_per_gpu < 0.5002
    df = sweep(spec, "a100-sxm-80gb", batch=1, prompt_tokens=5, generated_tokens=200,
               weight_dtype=["bf16", "w8a16"], parallelism=[Parallelism(), Parallelism(tp=2)],
               metrics=["weights_bytes_per_gpu", "tpot_s"])
    row = df[(df.weight_dtype == "int8") & (df.tp == 2)].iloc[0]
    assert row.weights_bytes_per_gpu == per_gpu and row.tpot_s == pytest.approx(two.tpot_s)
    assert len(df) == 4
