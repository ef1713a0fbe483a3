"""Tensor parallelism of the reference (`reference.tp`): 2 gloo ranks x 1 thread reproduce the
unsharded model's greedy tokens exactly and its logits within fp32 tolerance, for a vanilla
model (GQA with K >= tp and MQA with K < tp, i.e. replicated KV heads) and a Block Transformer,
in both profiles (static, hf-legacy). One spawn runs every case (`validation.ranks.run_ranks`:
a FileStore in a temp dir, a timeout on every collective, every process joined or killed).
"""

from __future__ import annotations

import os

import pytest
import torch

from costmodel.spec import BlockSpec, StackSpec, VanillaSpec
from reference import build_model
from reference.tp import collective_listener, op_path, shard_model
from validation.ranks import run_ranks

WORLD = 2
PROMPT, GENERATE, BATCH = 7, 6, 2


def _stack(n_layers: int, d: int, heads: int, kv: int, llama: bool) -> StackSpec:
    extra = dict(mlp="gated_silu", norm="rmsnorm", qkv_bias=False, out_bias=False,
                 mlp_bias=False, parallel_residual=False, rotary_fraction=1.0) if llama else {}
    return StackSpec(n_layers=n_layers, d_model=d, n_heads=heads, n_kv_heads=kv,
                     d_ffn=2 * d, **extra)


SPECS = {
    "neox": VanillaSpec(name="tiny-neox", vocab_size=96, stack=_stack(2, 32, 4, 4, False)),
    "llama-mqa": VanillaSpec(name="tiny-llama", vocab_size=96, tie_embeddings=True,
                             stack=_stack(2, 32, 4, 1, True)),
    "block": BlockSpec(name="tiny-block", vocab_size=96, block_length=4, prefix_length=2,
                       block_decoder=_stack(2, 32, 4, 2, False),
                       token_decoder=_stack(1, 16, 2, 2, False)),
}
CASES = [(name, mode) for name in SPECS for mode in ("static", "hf-legacy")]


def _prompt(spec) -> torch.Tensor:
    return torch.randint(0, spec.vocab_size, (BATCH, PROMPT),
                         generator=torch.Generator().manual_seed(1))


def _run(name: str, mode: str, rank: int = 0, world: int = 1):
    torch.manual_seed(0)
    spec = SPECS[name]
    model = build_model(spec, seed=0)  # the same full weights on every rank
    shard_model(model, rank, world)
    out = model.generate(_prompt(spec), GENERATE, mode=mode, return_logits=True)
    return out.tokens, out.logits


def _worker(rank: int, world: int, out_dir: str) -> None:
    for name, mode in CASES:
        calls: list[tuple[str, int]] = []
        with collective_listener(lambda op, nbytes, calls=calls: calls.append((op, nbytes))):
            tokens, logits = _run(name, mode, rank, world)
        if rank == 0:
            torch.save({"tokens": tokens, "logits": logits, "calls": calls},
                       os.path.join(out_dir, f"{name}-{mode}.pt"))


@pytest.fixture(scope="module")
def tp2_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("tp")
    run_ranks(_worker, WORLD, (str(tmp),), timeout_s=180)
    return {case: torch.load(tmp / f"{case[0]}-{case[1]}.pt") for case in CASES}


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_tp2_matches_tp1(tp2_results: dict, name: str, mode: str) -> None:
    torch.set_num_threads(1)
    tokens, logits = _run(name, mode)
    got = tp2_results[(name, mode)]
    assert torch.equal(got["tokens"], tokens)
    assert got["logits"].shape == logits.shape
    torch.testing.assert_close(got["logits"], logits, rtol=1e-4, atol=1e-5)
    ops = {op for op, _ in got["calls"]}
    prefix = "" if name != "block" else "token_decoder."
    assert prefix + "layers.attn.allreduce" in ops and prefix + "lm_head.allgather" in ops


def test_op_path_drops_layer_indices() -> None:
    assert op_path("token_decoder.layers.12.attn") == "token_decoder.layers.attn"
    assert op_path("layers.0") == "layers"


def test_shard_checks_the_layout() -> None:
    spec = SPECS["neox"]
    with pytest.raises(ValueError, match="^tp: 3 must divide"):
        shard_model(build_model(spec, device="meta"), 0, 3)
