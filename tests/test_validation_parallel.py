"""Exact counts of the tensor-parallel reference (`validate count --tp 2`) and the all-reduce
fit of `validation.collective_bench` (docs/parallelism.md 3, 6)."""

from __future__ import annotations

import pytest

from costmodel.cli import main as cli_main
from costmodel.collectives import allreduce_time_s
from costmodel.presets import get_preset
from validation.collective_bench import AllReduceResult, fit_alpha_beta, interconnect_record
from validation.count import compare


@pytest.mark.parametrize(("model", "profile"), [("vanilla_70", "static"),
                                                ("block_main_b4_19", "hf-legacy")])
def test_tp2_counts_equal_the_cost_model_collectives_included(model: str, profile: str) -> None:
    rep = compare(get_preset(model), 2, 8, 4, profile, "bf16", tp=2)
    assert rep.mismatches == 0
    comm = {r.op: r.counted["comm_bytes"] for r in rep.rows if r.phase in ("decode",
                                                                           "token_decoder.step")}
    prefix = "" if model.startswith("vanilla") else "token_decoder."
    assert comm[prefix + "layers.attn.allreduce"] > 0  # recorded, not only predicted
    assert comm[prefix + "lm_head.allgather"] > 0


def test_count_cli_tp_prints_the_collectives(capsys) -> None:
    assert cli_main(["validate", "count", "--model", "vanilla_70", "--prompt", "4",
                     "--generate", "2", "--tp", "2"]) == 0
    out = capsys.readouterr().out
    assert "layers.mlp.allreduce" in out and out.strip().endswith("count mismatches: 0")
    assert cli_main(["validate", "count", "--model", "vanilla_70", "--prompt", "4",
                     "--generate", "2", "--tp", "0"]) == 2


def test_alpha_beta_fit_recovers_the_ring_parameters() -> None:
    sizes = [4 * 4**k for k in range(12)]
    alpha, beta = 50e-6, 2e9
    times = [allreduce_time_s(m, 2, beta, alpha) for m in sizes]
    a, b, err = fit_alpha_beta(sizes, times, 2)
    assert a == pytest.approx(alpha, rel=1e-6) and b == pytest.approx(beta, rel=1e-6)
    assert err < 1e-9
    res = AllReduceResult("gloo", 2, 1, "x", "2026-12-01", (1.0, 1.0, 1.0),
                          latency_per_step_us=a * 1e6, bandwidth_GBps=b / 1e9)
    hw = interconnect_record("h100-sxm-80gb", res)
    assert hw.id == "h100-sxm-80gb-gloo" and hw.interconnect_latency_us == pytest.approx(50)


@pytest.mark.parametrize(("model", "weights", "kv"), [("vanilla_70", "w8a16", None),
                                                      ("block_main_b4_19", "w4a16-g32", "kv-int8")])
def test_tp2_quantised_counts_equal_the_cost_model(model: str, weights: str, kv: str | None
                                                   ) -> None:
    """Rank 0 of the sharded reference, then quantised (scales of its own rows/columns), counts
    exactly what the cost model's per-rank quantised rows and weights per GPU predict."""
    rep = compare(get_preset(model), 2, 8, 4, "static", "bf16", weight_dtype=weights,
                  kv_dtype=kv, tp=2)
    assert rep.mismatches == 0
    params = next(r for r in rep.rows if r.op == "(parameters)")
    dense = compare(get_preset(model), 2, 8, 4, "static", "bf16", tp=2)
    assert params.counted["bytes"] < 0.75 * next(
        r for r in dense.rows if r.op == "(parameters)").counted["bytes"]


def test_tp2_kernels_of_the_sharded_lookup_head_and_collectives() -> None:
    """Rank 0's prefill of vanilla_70 at tp 2 (bf16, batch 2, prompt 8), by hand
    (docs/parallelism.md 1, 6): the masked vocab-parallel lookup is 8 kernels over the 16 ids
    (ids read 5x and written 2x at 8 bytes, three bool masks, the cast mask and the rows);
    each all-reduce one kernel without activation bytes; the LM head one kernel; its
    all-gather the collective plus the concatenation reading and writing [2, 50304] logits."""
    spec = get_preset("vanilla_70")
    rep = compare(spec, 2, 8, 4, "static", "bf16", tp=2)
    assert rep.mismatches == 0
    got = {r.op: r.counted for r in rep.rows if r.phase == "prefill"}
    ids, rows = 16, 16 * 512 * 2  # token ids; gathered rows' bytes
    assert got["embed_in"]["kernels"] == 8
    assert got["embed_in"]["act_read_bytes"] == ids * (5 * 8 + 3 + 2) + rows
    assert got["embed_in"]["act_write_bytes"] == ids * (2 * 8 + 3 + 2) + 2 * rows
    for op in ("embed_in.allreduce", "layers.attn.allreduce", "layers.mlp.allreduce"):
        n = 1 if op.startswith("embed") else spec.stack.n_layers
        assert (got[op]["kernels"], got[op]["act_read_bytes"]) == (n, 0)
    logits = 2 * spec.vocab_size * 2
    assert got["lm_head"]["kernels"] == 1 and got["lm_head"]["act_write_bytes"] == logits // 2
    assert got["lm_head.allgather"] == got["lm_head.allgather"] | {
        "kernels": 2, "act_read_bytes": logits, "act_write_bytes": logits, "comm_bytes": logits}


def test_traffic_counter_leaves_real_collectives_to_the_tracer(tmp_path) -> None:
    """A real gloo all-reduce and all-gather (one rank) reach the dispatcher as c10d ops; the
    kernel rule skips them (the tracer counts each collective once, validation/collectives.py)."""
    import torch
    import torch.distributed as dist

    from validation.traffic import TrafficCounter

    counts: list[tuple[str, int]] = []
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0,
                            world_size=1)
    try:
        x = torch.ones(4)
        with TrafficCounter(lambda q, v: counts.append((q, v)), lambda t: False,
                            lambda t: False, lambda: True, lambda: False):
            dist.all_reduce(x)
            dist.all_gather([torch.empty_like(x)], x)
            y = x + 1  # an ordinary kernel is still counted
    finally:
        dist.destroy_process_group()
    assert y.sum() == 8
    assert counts == [("kernels", 1), ("act_read_bytes", 16), ("act_write_bytes", 16)]
